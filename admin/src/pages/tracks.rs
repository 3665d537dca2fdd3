//! The pages every track has: its dashboard, its audit log, and one certificate with its
//! history and the Revoke button.

use std::fmt::Write;

use actix_web::{web, HttpRequest, HttpResponse};
use dualca_ca::clock::rfc3339;
use dualca_ca::model::{AssetStatus, CertificateStatus, PersonStatus, RevocationReason};
use dualca_ca::{AssetQuery, AuditFilter, AuditRecord, Track};
use serde::Deserialize;

use super::html::{self, esc, link};
use super::session::{blocking, state, PageError, Session};
use crate::auth::Permission;

pub fn track_of(text: &str) -> Result<Track, PageError> {
    text.parse().map_err(|_| PageError::not_found(format!("There is no track {text:?}.")))
}

/// GET /admin/{track}
pub async fn dashboard(
    req: HttpRequest,
    session: Session,
    track: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let state = state(&req)?;
    let track = track_of(&track)?;
    session.require(&state, Permission::ReadDashboard, track, "read the dashboard").await?;
    let ca = state.ca.clone();
    let counts = blocking(move || ca.certificate_counts(track)).await?;
    let mut body = format!(
        "<h2>Certificates</h2><table class=\"counts\" id=\"counts\">\
         <tr><th>Active</th><th>Expiring within 7 days</th><th>Revoked today (UTC)</th></tr>\
         <tr><td id=\"active\">{}</td><td id=\"expiring\">{}</td><td id=\"revoked-today\">{}</td></tr></table>",
        counts.active, counts.expiring_within_7_days, counts.revoked_since
    );
    match track {
        Track::Machine if session.may(Permission::ReadAssets, track) => {
            let ca = state.ca.clone();
            let assets = blocking(move || ca.assets(&AssetQuery::default())).await?;
            let active = assets.iter().filter(|a| a.status == AssetStatus::Active).count();
            let _ = write!(
                body,
                "<h2>Inventory</h2><p><span id=\"assets\">{}</span> assets, {active} active. {}</p>",
                assets.len(),
                link("/admin/machine/assets", "All assets")
            );
        }
        Track::Human if session.may(Permission::ReadPeople, track) => {
            let ca = state.ca.clone();
            let people = blocking(move || ca.people(None)).await?;
            let active = people.iter().filter(|p| p.status == PersonStatus::Active).count();
            let _ = write!(
                body,
                "<h2>People</h2><p><span id=\"people\">{}</span> people, {active} active. {}</p>",
                people.len(),
                link("/admin/human/people", "All people")
            );
        }
        Track::Machine | Track::Human => {}
    }
    let mut links = Vec::new();
    if session.may(Permission::ReadAudit, track) {
        links.push(link(&format!("/admin/{track}/audit"), "Audit log"));
    }
    if track == Track::Machine && session.may(Permission::ReadAssets, track) {
        links.push(link("/admin/machine/assets", "Assets"));
    }
    if track == Track::Human && session.may(Permission::ReadPeople, track) {
        links.push(link("/admin/human/people", "People"));
    }
    if session.may(Permission::ReadMail, track) {
        links.push(link(&super::mail::href(track), "Undelivered mail"));
    }
    if !links.is_empty() {
        let _ = write!(
            body,
            "<h2>Pages</h2><ul>{}</ul>",
            links.iter().map(|l| format!("<li>{l}</li>")).collect::<String>()
        );
    }
    if session.may(Permission::ReadCertificates, track) {
        let _ = write!(
            body,
            "<h2>Find a certificate</h2><form method=\"get\" action=\"/admin/{track}/certificates\">\
             <label>Serial (hex) <input name=\"serial\" required size=\"40\"></label> <button type=\"submit\">Open</button></form>"
        );
    }
    Ok(html::ok(&format!("{} track", capitalised(track)), &session, &body))
}

pub(super) fn capitalised(track: Track) -> &'static str {
    match track {
        Track::Machine => "Machine",
        Track::Human => "Human",
    }
}

#[derive(Deserialize, Default)]
struct AuditQuery {
    #[serde(default)]
    action: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    serial: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    cursor: Option<i64>,
    limit: Option<i64>,
}

const AUDIT_PAGE: i64 = 50;

/// RFC 3339, Unix seconds, or a date (midnight UTC).
fn parse_time(field: &str, text: &str) -> Result<Option<i64>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(secs) = text.parse::<i64>() {
        return Ok(Some(secs));
    }
    if let Ok(t) = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        return Ok(Some(t.unix_timestamp()));
    }
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(text, &date_format) {
        return Ok(Some(d.midnight().assume_utc().unix_timestamp()));
    }
    Err(format!("{field} must be RFC 3339 (2026-01-31T12:00:00Z), a date (2026-01-31) or Unix seconds, not {text:?}"))
}

fn non_empty(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// GET /admin/{track}/audit: the track's chain, filtered by a GET form, a page at a time.
pub async fn audit(req: HttpRequest, session: Session, track: web::Path<String>) -> Result<HttpResponse, PageError> {
    let state = state(&req)?;
    let track = track_of(&track)?;
    session.require(&state, Permission::ReadAudit, track, "read the audit log").await?;
    let q = web::Query::<AuditQuery>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| PageError::bad_request(format!("The filter could not be read: {e}")))?;
    let mut body = audit_form(track, &q);
    let times = parse_time("from", &q.from).and_then(|from| Ok((from, parse_time("to", &q.to)?)));
    let (from, to) = match times {
        Ok(times) => times,
        Err(why) => {
            let _ = write!(body, "<p class=\"error\" id=\"filter-error\">{}</p>", esc(&why));
            let html = html::document(&format!("{} audit log", capitalised(track)), Some(&session), &body);
            return Ok(html::respond(actix_web::http::StatusCode::BAD_REQUEST, html));
        }
    };
    let filter = AuditFilter {
        from,
        to,
        action: non_empty(&q.action),
        actor: non_empty(&q.actor),
        subject: non_empty(&q.subject),
        serial: non_empty(&q.serial).map(|s| s.to_ascii_lowercase()),
    };
    let limit = q.limit.unwrap_or(AUDIT_PAGE).clamp(1, 500);
    let after = q.cursor.unwrap_or(0);
    let ca = state.ca.clone();
    let events = blocking(move || ca.audit_events(track, &filter, after, limit)).await?;
    if events.is_empty() {
        body.push_str("<p id=\"no-events\">No events match.</p>");
    } else {
        body.push_str(&audit_table(&session, track, &events));
    }
    let mut paging = Vec::new();
    if after > 0 {
        paging.push(link(&audit_href(track, &q, None), "First page"));
    }
    if events.len() as i64 == limit {
        if let Some(last) = events.last() {
            paging.push(format!(
                "<a id=\"next-page\" href=\"{}\">Next page</a>",
                esc(&audit_href(track, &q, Some(last.seq)))
            ));
        }
    }
    if !paging.is_empty() {
        let _ = write!(body, "<p class=\"paging\">{}</p>", paging.join(" · "));
    }
    Ok(html::ok(&format!("{} audit log", capitalised(track)), &session, &body))
}

fn audit_href(track: Track, q: &AuditQuery, cursor: Option<i64>) -> String {
    let cursor = cursor.map(|c| c.to_string()).unwrap_or_default();
    let limit = q.limit.map(|l| l.to_string()).unwrap_or_default();
    let query = html::query_string(&[
        ("action", &q.action),
        ("actor", &q.actor),
        ("subject", &q.subject),
        ("serial", &q.serial),
        ("from", &q.from),
        ("to", &q.to),
        ("limit", &limit),
        ("cursor", &cursor),
    ]);
    format!("/admin/{track}/audit{query}")
}

fn audit_form(track: Track, q: &AuditQuery) -> String {
    let field = |name: &str, label: &str, value: &str, hint: &str| {
        format!(
            "<label>{} <input name=\"{name}\" id=\"filter-{name}\" value=\"{}\" placeholder=\"{}\"></label>",
            esc(label),
            esc(value),
            esc(hint)
        )
    };
    format!(
        "<form method=\"get\" action=\"/admin/{track}/audit\" class=\"filters\" id=\"audit-filter\">{}{}{}{}{}{}\
         <button type=\"submit\" id=\"apply-filter\">Filter</button> {}</form>",
        field("action", "Action", &q.action, "certificate.issued"),
        field("actor", "Actor", &q.actor, "admin:alice"),
        field("subject", "Subject", &q.subject, "asset:web-1"),
        field("serial", "Serial", &q.serial, "hex"),
        field("from", "From", &q.from, "2026-01-31 or RFC 3339"),
        field("to", "To", &q.to, "RFC 3339 or Unix seconds"),
        link(&format!("/admin/{track}/audit"), "Clear"),
    )
}

/// The subject, linked to its page when there is one the role may open.
fn subject_cell(session: &Session, track: Track, subject: &str) -> String {
    if let Some(serial) = subject.strip_prefix("certificate:") {
        if session.may(Permission::ReadCertificates, track) {
            return link(&html::certificate_href(track, serial), subject);
        }
    }
    if let Some(name) = subject.strip_prefix("asset:") {
        if track == Track::Machine && session.may(Permission::ReadAssets, track) {
            return link(&html::asset_href(name), subject);
        }
    }
    if let Some(email) = subject.strip_prefix("person:") {
        if track == Track::Human && session.may(Permission::ReadPeople, track) {
            return link(&html::person_href(email), subject);
        }
    }
    esc(subject)
}

fn audit_table(session: &Session, track: Track, events: &[AuditRecord]) -> String {
    let mut out = String::from(
        "<table class=\"events\" id=\"events\"><thead><tr><th>Seq</th><th>Time (UTC)</th><th>Actor</th>\
         <th>Action</th><th>Subject</th><th>Details</th></tr></thead><tbody>",
    );
    for e in events {
        let _ = write!(
            out,
            "<tr><td class=\"seq\">{}</td><td>{}</td><td class=\"actor\">{}</td><td class=\"action\">{}</td>\
             <td class=\"subject\">{}</td><td class=\"details\">{}</td></tr>",
            e.seq,
            esc(&rfc3339(e.at)),
            esc(&e.actor),
            esc(&e.action),
            subject_cell(session, track, &e.subject),
            esc(&e.details.to_string())
        );
    }
    out.push_str("</tbody></table>");
    out
}

#[derive(Deserialize)]
struct SerialQuery {
    #[serde(default)]
    serial: String,
}

/// GET /admin/{track}/certificates?serial=…: the dashboard's lookup form lands here.
pub async fn find_certificate(
    req: HttpRequest,
    session: Session,
    track: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let state = state(&req)?;
    let track = track_of(&track)?;
    session.require(&state, Permission::ReadCertificates, track, "read certificates").await?;
    let q = web::Query::<SerialQuery>::from_query(req.query_string())
        .map_err(|e| PageError::bad_request(format!("The query could not be read: {e}")))?;
    let serial: String = q.serial.trim().chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
    if serial.is_empty() {
        return Err(PageError::bad_request("Give a serial number."));
    }
    Ok(html::see_other(&html::certificate_href(track, &serial)))
}

#[derive(Deserialize, Default)]
struct NoticeQuery {
    revoked: Option<String>,
}

/// GET /admin/{track}/certificates/{serial}
pub async fn certificate(
    req: HttpRequest,
    session: Session,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, PageError> {
    let state = state(&req)?;
    let (track, serial) = path.into_inner();
    let track = track_of(&track)?;
    session.require(&state, Permission::ReadCertificates, track, "read certificates").await?;
    let notice = web::Query::<NoticeQuery>::from_query(req.query_string()).map(|q| q.into_inner()).unwrap_or_default();
    let ca = state.ca.clone();
    let serial = serial.to_ascii_lowercase();
    let (cert, history) = blocking(move || ca.certificate_history(track, &serial)).await?;
    let mut body = String::new();
    if notice.revoked.is_some() && cert.status == CertificateStatus::Revoked {
        body.push_str("<p class=\"notice\" id=\"notice\">The certificate was revoked.</p>");
    }
    let identifiers: Vec<String> = cert.identifiers.iter().map(|i| esc(&i.to_string())).collect();
    let reason = cert.revocation_reason.and_then(|r| RevocationReason::from_code(r.into())).map(|r| r.name());
    body.push_str(&html::facts(&[
        ("Serial", format!("<code id=\"serial\">{}</code>", esc(&cert.serial))),
        ("Track", esc(cert.track.as_str())),
        ("Status", format!("<span id=\"status\">{}</span>", esc(cert.status.as_str()))),
        ("Profile", esc(&cert.profile)),
        ("Identifiers", identifiers.join("<br>")),
        ("Not before", esc(&rfc3339(cert.not_before))),
        ("Not after", esc(&rfc3339(cert.not_after))),
        ("Account", esc(cert.account_id.as_deref().unwrap_or("—"))),
        ("Revoked at", esc(&cert.revoked_at.map(rfc3339).unwrap_or_else(|| "—".into()))),
        ("Revocation reason", esc(reason.unwrap_or("—"))),
        (
            "Replaced by",
            match &cert.replaced_by {
                Some(s) => link(&html::certificate_href(track, s), s),
                None => "—".into(),
            },
        ),
    ]));
    if cert.status == CertificateStatus::Valid && session.may(Permission::RevokeCertificates, track) {
        let options: String = [
            RevocationReason::Unspecified,
            RevocationReason::KeyCompromise,
            RevocationReason::AffiliationChanged,
            RevocationReason::Superseded,
            RevocationReason::CessationOfOperation,
            RevocationReason::PrivilegeWithdrawn,
        ]
        .iter()
        .map(|r| format!("<option value=\"{0}\">{0}</option>", esc(r.name())))
        .collect();
        let _ = write!(
            body,
            "<h2>Revoke</h2><form method=\"post\" action=\"{}\" data-confirm=\"{}\">{}\
             <label>Reason <select name=\"reason\" id=\"reason\">{options}</select></label> \
             <button type=\"submit\" class=\"danger\" id=\"revoke\">Revoke</button></form>",
            esc(&format!("{}/revoke", html::certificate_href(track, &cert.serial))),
            esc(&format!("Revoke certificate {}? Relying parties see it at once.", cert.serial)),
            html::csrf_field(&session.csrf)
        );
    }
    let _ = write!(body, "<h2>History</h2>{}", audit_table(&session, track, &history));
    let pem = dualca_ca::hierarchy::der_to_pem(&cert.der);
    let _ = write!(body, "<details><summary>PEM</summary><pre>{}</pre></details>", esc(&pem));
    Ok(html::ok("Certificate", &session, &body))
}

#[derive(Deserialize)]
struct RevokeForm {
    reason: Option<String>,
}

/// POST /admin/{track}/certificates/{serial}/revoke
pub async fn revoke(
    req: HttpRequest,
    session: Session,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, PageError> {
    let state = state(&req)?;
    let (track, serial) = path.into_inner();
    let track = track_of(&track)?;
    let form_data: RevokeForm =
        session.accept_form(&state, &body, Permission::RevokeCertificates, track, "revoke certificates").await?;
    let reason_text = form_data.reason.unwrap_or_else(|| "unspecified".into());
    let reason = RevocationReason::parse(&reason_text)
        .ok_or_else(|| PageError::bad_request(format!("Unknown revocation reason {reason_text:?}.")))?;
    let (ca, operator, serial) = (state.ca.clone(), session.actor(), serial.to_ascii_lowercase());
    let serial_for_call = serial.clone();
    blocking(move || ca.revoke_by_operator(Some(track), &serial_for_call, reason, &operator)).await?;
    crate::metrics::REVOCATIONS.with_label_values(&[track.as_str()]).inc();
    Ok(html::see_other(&format!("{}?revoked=1", html::certificate_href(track, &serial))))
}
