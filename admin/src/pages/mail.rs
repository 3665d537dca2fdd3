//! A track's undelivered mail, and the Send again button for mail that delivery gave up on:
//! the page form of `GET /admin/api/{track}/outbox` and its retry.

use std::fmt::Write;

use actix_web::{web, HttpRequest, HttpResponse};
use dualca_ca::clock::rfc3339;
use dualca_ca::{QueuedMail, Track};
use serde::Deserialize;

use super::html::{self, esc, url_part};
use super::session::{blocking, state, CsrfForm, PageError, Session};
use super::tracks::{capitalised, track_of};
use crate::auth::Permission;

/// At most this many undelivered mails are listed, oldest first (as in the API).
const LIST_LIMIT: i64 = 500;

pub fn href(track: Track) -> String {
    format!("/admin/{track}/mail")
}

#[derive(Deserialize, Default)]
struct NoticeQuery {
    retried: Option<String>,
}

/// GET /admin/{track}/mail
pub async fn list(req: HttpRequest, session: Session, track: web::Path<String>) -> Result<HttpResponse, PageError> {
    let state = state(&req)?;
    let track = track_of(&track)?;
    session.require(&state, Permission::ReadMail, track, "read the outbox").await?;
    let notice = web::Query::<NoticeQuery>::from_query(req.query_string()).map(|q| q.into_inner()).unwrap_or_default();
    let ca = state.ca.clone();
    let mail = blocking(move || ca.undelivered_mail_of(track, LIST_LIMIT)).await?;
    let mut body = String::new();
    // The notice follows the mail's state now: the round after the retry may have sent it
    // (then it is not listed), or failed again.
    if let Some(id) = notice.retried {
        let text = match mail.iter().find(|m| m.id == id) {
            Some(m) if m.given_up() => {
                format!("Mail {id} was queued again, and its next attempt failed too; see its last error.")
            }
            Some(_) => format!("Mail {id} is queued again; the next delivery round sends it."),
            None => format!("Mail {id} is not waiting any more."),
        };
        let _ = write!(body, "<p class=\"notice\" id=\"notice\">{}</p>", esc(&text));
    }
    body.push_str(
        "<p>Mail that has not reached the relay yet: still being tried (with growing waits between \
         attempts), or given up after too many failures. Once the cause is fixed, a given-up mail \
         can be sent again.</p>",
    );
    if mail.is_empty() {
        body.push_str("<p id=\"no-mail\">Every mail of this track has been delivered.</p>");
    } else {
        body.push_str(&table(&session, track, &mail));
    }
    Ok(html::ok(&format!("{} undelivered mail", capitalised(track)), &session, &body))
}

fn table(session: &Session, track: Track, mail: &[QueuedMail]) -> String {
    let may_retry = session.may(Permission::ManageMail, track);
    let mut out = String::from(
        "<table class=\"events\" id=\"mail\"><thead><tr><th>Id</th><th>Queued (UTC)</th><th>To</th>\
         <th>Subject</th><th>State</th><th>Failed attempts</th><th>Last error</th><th></th></tr></thead><tbody>",
    );
    for m in mail {
        let state =
            if m.given_up() { "given up".to_string() } else { format!("next attempt {}", rfc3339(m.next_attempt_at)) };
        let action = if m.given_up() && may_retry {
            format!(
                "<form method=\"post\" action=\"{}\">{}<button type=\"submit\" class=\"retry\">Send again</button></form>",
                esc(&format!("{}/{}/retry", href(track), url_part(&m.id))),
                html::csrf_field(&session.csrf)
            )
        } else {
            String::new()
        };
        let _ = write!(
            out,
            "<tr id=\"mail-{}\"><td class=\"id\">{}</td><td>{}</td><td class=\"recipient\">{}</td>\
             <td class=\"subject\">{}</td><td class=\"state\">{}</td><td class=\"attempts\">{}</td>\
             <td class=\"error\">{}</td><td>{action}</td></tr>",
            esc(&m.id),
            esc(&m.id),
            esc(&rfc3339(m.created_at)),
            esc(&m.recipient),
            esc(m.subject_for_operators()),
            esc(&state),
            m.attempts,
            esc(m.last_error.as_deref().unwrap_or("—")),
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// POST /admin/{track}/mail/{id}/retry
pub async fn retry(
    req: HttpRequest,
    session: Session,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, PageError> {
    let state = state(&req)?;
    let (track, id) = path.into_inner();
    let track = track_of(&track)?;
    session.accept_form::<CsrfForm>(&state, &body, Permission::ManageMail, track, "send mail again").await?;
    let (ca, operator) = (state.ca.clone(), session.actor());
    let mail = blocking(move || ca.retry_mail(track, &id, &operator)).await?;
    Ok(html::see_other(&format!("{}{}", href(track), html::query_string(&[("retried", &mail.id)]))))
}
