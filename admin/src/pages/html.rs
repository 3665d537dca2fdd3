//! The pages' markup: the escape helpers every interpolated value goes through, the shared
//! layout, and the response headers (a Content-Security-Policy that admits only the one inline
//! style sheet and the one inline script below, by hash).

use std::fmt::Write;
use std::sync::LazyLock;

use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;
use base64::Engine;
use dualca_ca::Track;

use super::session::Session;
use crate::auth::Permission;

/// Escapes text for HTML element content and for quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Percent-encodes text for one path segment or one query value: everything but RFC 3986's
/// unreserved characters. The result still goes through `esc` when it lands in an attribute.
pub fn url_part(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A query string (with its `?`) from the pairs whose value is not empty.
pub fn query_string(pairs: &[(&str, &str)]) -> String {
    let parts: Vec<String> =
        pairs.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| format!("{}={}", url_part(k), url_part(v))).collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// `<a href="…">text</a>`, both escaped.
pub fn link(href: &str, text: &str) -> String {
    format!("<a href=\"{}\">{}</a>", esc(href), esc(text))
}

pub fn asset_href(name: &str) -> String {
    format!("/admin/machine/assets/{}", url_part(name))
}

pub fn person_href(email: &str) -> String {
    format!("/admin/human/people/{}", url_part(email))
}

pub fn certificate_href(track: Track, serial: &str) -> String {
    format!("/admin/{track}/certificates/{}", url_part(serial))
}

/// The hidden field every state-changing form carries.
pub fn csrf_field(csrf: &str) -> String {
    format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(csrf))
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#222}\
header{background:#1d3557;color:#fff;padding:.6em 1em;display:flex;gap:1.2em;align-items:center;flex-wrap:wrap}\
header a{color:#fff}header form{margin-left:auto}main{padding:1em 1.5em}\
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}\
th{background:#f1f1f1}td.details{font-family:monospace;font-size:.85em;max-width:40em;word-break:break-all}\
.counts td{font-size:1.3em}.notice{background:#e7f5e7;border:1px solid #7c7;padding:.5em}\
.error{background:#fdecea;border:1px solid #e77;padding:.5em}button.danger{background:#b00020;color:#fff;border:0;padding:.4em .9em}\
form.filters label{display:inline-block;margin:0 .8em .4em 0}pre{background:#f7f7f7;padding:.5em;overflow-x:auto}\
textarea{width:100%;max-width:48em;font-family:monospace}";

/// Asks before a dangerous form is submitted; the question comes from the form's escaped
/// `data-confirm` attribute, so no value is ever written into script.
const SCRIPT: &str = "document.querySelectorAll('form[data-confirm]').forEach(function(f){\
f.addEventListener('submit',function(e){if(!window.confirm(f.dataset.confirm)){e.preventDefault();}});});";

fn csp_hash(text: &str) -> String {
    format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(openssl::sha::sha256(text.as_bytes())))
}

static CONTENT_SECURITY_POLICY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "default-src 'none'; style-src {}; script-src {}; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        csp_hash(STYLE),
        csp_hash(SCRIPT)
    )
});

/// A whole document: the header with what the signed-in role may open, then `body`.
pub fn document(title: &str, session: Option<&Session>, body: &str) -> String {
    let mut nav = String::from("<strong>dualca admin</strong>");
    if let Some(s) = session {
        for track in Track::ALL {
            if s.role.may(Permission::ReadDashboard, Some(track)) {
                nav.push_str(&link(&format!("/admin/{track}"), &format!("{track} track")));
            }
        }
        let _ = write!(
            nav,
            "<span>signed in as {} ({})</span><form method=\"post\" action=\"/admin/logout\">{}\
             <button type=\"submit\" id=\"sign-out\">Sign out</button></form>",
            esc(&s.subject),
            esc(s.role.as_str()),
            csrf_field(&s.csrf)
        );
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · dualca admin</title><style>{STYLE}</style></head>\
         <body><header>{nav}</header><main><h1>{}</h1>\n{body}\n</main><script>{SCRIPT}</script></body></html>\n",
        esc(title),
        esc(title)
    )
}

/// An HTML response with the headers every page carries.
pub fn respond(status: StatusCode, html: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY.as_str()))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(html)
}

pub fn ok(title: &str, session: &Session, body: &str) -> HttpResponse {
    respond(StatusCode::OK, document(title, Some(session), body))
}

/// 303 See Other: where a form post or a sign-in leads.
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// A definition table of (label, already-escaped HTML) rows.
pub fn facts(rows: &[(&str, String)]) -> String {
    let mut out = String::from("<table class=\"facts\">");
    for (label, value) in rows {
        let _ = write!(out, "<tr><th>{}</th><td>{value}</td></tr>", esc(label));
    }
    out.push_str("</table>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(esc(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }

    #[test]
    fn encodes_url_parts() {
        assert_eq!(url_part("a b/<c>&é"), "a%20b%2F%3Cc%3E%26%C3%A9");
        assert_eq!(
            query_string(&[("action", "certificate.issued"), ("actor", ""), ("cursor", "7")]),
            "?action=certificate.issued&cursor=7"
        );
    }
}
