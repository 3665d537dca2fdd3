//! The human track's people pages: the list with its status filter and the joiner form, and one
//! person with their proofing history, their certificates, their recoveries and the help-desk
//! actions (a help-desk check, a mover, a recovery and its approval by a second operator, a
//! leaver; the destructive ones behind a confirm dialog). Each action calls the same `Ca`
//! method as the API and redirects back; when the CA refuses it (bad input, a conflict, the
//! two-person rule), the page it came from is shown again with the reason and the form as it
//! was filled in.

use std::fmt::Write;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use dualca_ca::clock::rfc3339;
use dualca_ca::model::{
    CertificateRecord, CertificateStatus, JoinerSpec, Person, PersonStatus, ProofingLevel, Recovery, RecoverySpec,
};
use dualca_ca::{CertificateFilter, Track};
use serde::Deserialize;

use super::html::{self, esc, link};
use super::session::{blocking, state, PageError, Session};
use crate::auth::{AdminState, Permission};

const LIST: &str = "/admin/human/people";

const STATUSES: [PersonStatus; 4] =
    [PersonStatus::Invited, PersonStatus::Active, PersonStatus::Suspended, PersonStatus::Left];

/// The help-desk checks `Ca::proof_by_helpdesk` accepts, with their labels.
const METHODS: [(&str, &str); 3] =
    [("in-person", "In person"), ("video", "Video call"), ("manager-callback", "Call back to the manager")];

/// The revocation reasons a recovery offers, with their labels.
const RECOVERY_REASONS: [(&str, &str); 2] = [
    ("keyCompromise", "Key compromise: the key or device may be in someone else's hands"),
    ("superseded", "Superseded: the key is lost or destroyed, not compromised"),
];

/// A refusal the operator can act on (bad input, a conflict, or a rule of the CA such as the
/// two-person rule), as (status, reason); anything else (a missing person, an internal error)
/// ends the request as usual. Only the CA's answers come here: the role and CSRF checks end
/// the request before.
fn refusal(e: PageError) -> Result<(StatusCode, String), PageError> {
    match e {
        PageError::Message(status, why)
            if matches!(status, StatusCode::BAD_REQUEST | StatusCode::CONFLICT | StatusCode::FORBIDDEN) =>
        {
            Ok((status, why))
        }
        other => Err(other),
    }
}

fn error_box(error: Option<&str>) -> String {
    error.map(|why| format!("<p class=\"error\" id=\"form-error\">{}</p>", esc(why))).unwrap_or_default()
}

fn input(name: &str, label: &str, value: &str, kind: &str, required: bool) -> String {
    format!(
        "<label>{} <input type=\"{kind}\" name=\"{name}\" id=\"{name}\" value=\"{}\"{}></label> ",
        esc(label),
        esc(value),
        if required { " required" } else { "" }
    )
}

#[derive(Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    status: String,
    /// Set by the joiner form's redirect.
    joined: Option<String>,
}

#[derive(Deserialize, Default)]
struct JoinForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    employee_id: String,
    #[serde(default)]
    manager_email: String,
}

fn list_body(
    session: &Session,
    people: &[Person],
    status: &str,
    joined: Option<&Person>,
    error: Option<&str>,
    joiner: &JoinForm,
) -> String {
    let option = |value: &str, label: &str| {
        let selected = if status == value { " selected" } else { "" };
        format!("<option value=\"{}\"{selected}>{}</option>", esc(value), esc(label))
    };
    let options: String =
        std::iter::once(option("", "all")).chain(STATUSES.iter().map(|s| option(s.as_str(), s.as_str()))).collect();
    let mut body = format!(
        "<form method=\"get\" action=\"{LIST}\" class=\"filters\"><label>Status \
         <select name=\"status\" id=\"filter-status\">{options}</select></label> \
         <button type=\"submit\" id=\"apply-filter\">Show</button></form>"
    );
    if let Some(p) = joined {
        let _ = write!(
            body,
            "<p class=\"notice\" id=\"notice\">Registered {}: the invite with the enrollment link and code went to {}.</p>",
            link(&html::person_href(&p.email), &p.display_name),
            esc(&p.email)
        );
    }
    if people.is_empty() {
        body.push_str("<p id=\"no-people\">No people.</p>");
    } else {
        body.push_str(
            "<table id=\"people\"><thead><tr><th>Email</th><th>Name</th><th>Status</th><th>Proofing level</th>\
             <th>Manager</th></tr></thead><tbody>",
        );
        for p in people {
            let _ = write!(
                body,
                "<tr><td class=\"email\">{}</td><td class=\"name\">{}</td><td class=\"status\">{}</td>\
                 <td class=\"level\">{}</td><td>{}</td></tr>",
                link(&html::person_href(&p.email), &p.email),
                esc(&p.display_name),
                esc(p.status.as_str()),
                esc(p.proofing_level.as_str()),
                esc(&p.manager_email)
            );
        }
        body.push_str("</tbody></table>");
    }
    if session.may(Permission::ManagePeople, Track::Human) {
        let _ = write!(
            body,
            "<h2 id=\"register\">Register a joiner</h2>{}<p>They get a mail with a one-time link and code to enroll.</p>\
             <form method=\"post\" action=\"{LIST}\" id=\"joiner\">{}<p>{}{}{}{}</p>\
             <p><button type=\"submit\" id=\"register-joiner\">Register</button></p></form>",
            error_box(error),
            html::csrf_field(&session.csrf),
            input("email", "Email", &joiner.email, "email", true),
            input("display_name", "Name", &joiner.display_name, "text", true),
            input("employee_id", "Employee id", &joiner.employee_id, "text", true),
            input("manager_email", "Manager email", &joiner.manager_email, "email", true),
        );
    }
    body
}

/// GET /admin/human/people
pub async fn list(req: HttpRequest, session: Session) -> Result<HttpResponse, PageError> {
    let state = state(&req)?;
    session.require(&state, Permission::ReadPeople, Track::Human, "list people").await?;
    let q = web::Query::<ListQuery>::from_query(req.query_string()).map(|q| q.into_inner()).unwrap_or_default();
    let status = match q.status.as_str() {
        "" => None,
        s => Some(PersonStatus::parse(s).ok_or_else(|| PageError::bad_request(format!("Unknown status {s:?}.")))?),
    };
    let ca = state.ca.clone();
    let people = blocking(move || ca.people(status)).await?;
    // Only a person who is there is announced, so the link cannot put words on the page.
    let joined = q.joined.as_deref().and_then(|e| people.iter().find(|p| p.email == e));
    let body = list_body(&session, &people, &q.status, joined, None, &JoinForm::default());
    Ok(html::ok("People", &session, &body))
}

/// POST /admin/human/people: the joiner form.
pub async fn join(req: HttpRequest, session: Session, body: web::Bytes) -> Result<HttpResponse, PageError> {
    let state = state(&req)?;
    let f: JoinForm =
        session.accept_form(&state, &body, Permission::ManagePeople, Track::Human, "register joiners").await?;
    let spec = JoinerSpec {
        email: f.email.trim().to_string(),
        display_name: f.display_name.trim().to_string(),
        employee_id: f.employee_id.trim().to_string(),
        manager_email: f.manager_email.trim().to_string(),
    };
    let (ca, actor) = (state.ca.clone(), session.actor());
    match blocking(move || ca.person_joins(&spec, &actor)).await {
        Ok(invitation) => {
            Ok(html::see_other(&format!("{LIST}{}", html::query_string(&[("joined", &invitation.person.email)]))))
        }
        Err(e) => {
            let (status, why) = refusal(e)?;
            let ca = state.ca.clone();
            let people = blocking(move || ca.people(None)).await?;
            let body = list_body(&session, &people, "", None, Some(&why), &f);
            Ok(html::respond(status, html::document("People", Some(&session), &body)))
        }
    }
}

/// One person as the detail page shows them.
struct PersonView {
    person: Person,
    /// (level, method, evidence, operator, at), oldest first.
    proofing: Vec<(String, String, String, String, i64)>,
    certificates: Vec<CertificateRecord>,
    /// Newest first.
    recoveries: Vec<Recovery>,
    now: i64,
}

async fn load(state: &AdminState, email: String) -> Result<PersonView, PageError> {
    let ca = state.ca.clone();
    blocking(move || {
        let person = ca.person(&email)?;
        let proofing = ca.proofing_history(&email)?;
        let filter = CertificateFilter { person: Some(person.id.clone()), ..CertificateFilter::default() };
        let certificates = ca.search_certificates(Track::Human, &filter, None, 1000)?;
        let recoveries = ca.recoveries(&email)?;
        Ok(PersonView { person, proofing, certificates, recoveries, now: ca.clock.unix() })
    })
    .await
}

fn title(person: &Person) -> String {
    format!("Person {}", person.email)
}

#[derive(Deserialize, Default)]
struct NoticeQuery {
    done: Option<String>,
    revoked: Option<usize>,
}

/// What a redirect after an action announces: fixed texts, picked by a keyword, and only when
/// the person's state agrees.
fn notice(q: &NoticeQuery, view: &PersonView) -> Option<String> {
    let person = &view.person;
    let pending = view.recoveries.first().is_some_and(|r| r.awaits_approval(view.now));
    let text = match (q.done.as_deref()?, person.status) {
        ("proofed", _) => "The help-desk check was recorded, and the person was told by mail.".to_string(),
        ("moved", _) => "The move was recorded.".to_string(),
        ("left", PersonStatus::Left) => format!(
            "Recorded as a leaver: {} certificate(s) revoked, their ACME accounts and EAB keys deactivated, \
             and they and their manager were told by mail.",
            q.revoked.unwrap_or(0)
        ),
        ("recovered", PersonStatus::Active) => format!(
            "Recovered: {} certificate(s) revoked, their ACME accounts and EAB keys deactivated, and a new \
             enrollment link and code mailed to them (neither is shown here). Their manager was told.",
            q.revoked.unwrap_or(0)
        ),
        ("recovery-pending", PersonStatus::Active) if pending => "The recovery was requested and waits for a second \
             operator's approval: this person holds a client-auth certificate or was proofed by the help desk. \
             They were told by mail."
            .to_string(),
        ("recovery-cancelled", _) => "The recovery was cancelled, and the person was told by mail.".to_string(),
        _ => return None,
    };
    Some(format!("<p class=\"notice\" id=\"notice\">{}</p>", esc(&text)))
}

#[derive(Deserialize, Default)]
struct ActionForm {
    #[serde(default)]
    method: String,
    #[serde(default)]
    evidence: String,
    /// The mover's new address.
    #[serde(default)]
    email: String,
    /// The mover's new manager.
    #[serde(default)]
    manager_email: String,
    /// The recovery's revocation reason, check and evidence (apart from the help-desk check's,
    /// so that a refused recovery does not fill in the other form).
    #[serde(default)]
    reason: String,
    #[serde(default)]
    recovery_method: String,
    #[serde(default)]
    recovery_evidence: String,
}

fn detail_body(
    session: &Session,
    view: &PersonView,
    notice: Option<String>,
    error: Option<&str>,
    filled: &ActionForm,
) -> String {
    let p = &view.person;
    let mut body = notice.unwrap_or_default();
    body.push_str(&error_box(error));
    body.push_str(&html::facts(&[
        ("Email", format!("<span id=\"email\">{}</span>", esc(&p.email))),
        ("Name", format!("<span id=\"display-name\">{}</span>", esc(&p.display_name))),
        ("Employee id", esc(&p.employee_id)),
        ("Manager", esc(&p.manager_email)),
        ("Status", format!("<span id=\"status\">{}</span>", esc(p.status.as_str()))),
        ("Proofing level", format!("<span id=\"level\">{}</span>", esc(p.proofing_level.as_str()))),
        ("Registered", esc(&rfc3339(p.created_at))),
        ("Updated", esc(&rfc3339(p.updated_at))),
        ("Left", esc(&p.left_at.map(rfc3339).unwrap_or_else(|| "—".into()))),
    ]));

    body.push_str("<h2>Proofing history</h2>");
    if view.proofing.is_empty() {
        body.push_str("<p id=\"no-proofing\">None yet: the person has not enrolled.</p>");
    } else {
        body.push_str(
            "<table id=\"proofing\"><thead><tr><th>Time (UTC)</th><th>Level</th><th>Method</th><th>Evidence</th>\
             <th>Operator</th></tr></thead><tbody>",
        );
        for (level, method, evidence, operator, at) in &view.proofing {
            let _ = write!(
                body,
                "<tr><td>{}</td><td class=\"level\">{}</td><td class=\"method\">{}</td><td class=\"details\">{}</td>\
                 <td class=\"operator\">{}</td></tr>",
                esc(&rfc3339(*at)),
                esc(level),
                esc(method),
                esc(evidence),
                esc(operator)
            );
        }
        body.push_str("</tbody></table>");
    }

    body.push_str("<h2>Certificates</h2>");
    if view.certificates.is_empty() {
        body.push_str("<p id=\"no-certificates\">None.</p>");
    } else {
        body.push_str(
            "<table id=\"certificates\"><thead><tr><th>Serial</th><th>Status</th><th>Profile</th><th>Identifiers</th>\
             <th>Not after</th></tr></thead><tbody>",
        );
        let may_open = session.may(Permission::ReadCertificates, Track::Human);
        for c in &view.certificates {
            let serial = if may_open {
                link(&html::certificate_href(Track::Human, &c.serial), &c.serial)
            } else {
                esc(&c.serial)
            };
            let ids: Vec<String> = c.identifiers.iter().map(|i| esc(&i.to_string())).collect();
            let _ = write!(
                body,
                "<tr><td class=\"serial\">{serial}</td><td class=\"status\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(c.status.as_str()),
                esc(&c.profile),
                ids.join("<br>"),
                esc(&rfc3339(c.not_after))
            );
        }
        body.push_str("</tbody></table>");
    }

    body.push_str(&recoveries_table(&view.recoveries, view.now));

    if session.may(Permission::ManagePeople, Track::Human) {
        body.push_str(&actions(session, view, filled));
    }
    body
}

fn recoveries_table(recoveries: &[Recovery], now: i64) -> String {
    let mut out = String::from("<h2>Recoveries</h2>");
    if recoveries.is_empty() {
        out.push_str("<p id=\"no-recoveries\">None.</p>");
        return out;
    }
    out.push_str(
        "<table id=\"recoveries\"><thead><tr><th>Requested (UTC)</th><th>Status</th><th>Reason</th><th>Method</th>\
         <th>Evidence</th><th>Requested by</th><th>Approved by</th><th>Two operators</th></tr></thead><tbody>",
    );
    for r in recoveries {
        let status = if r.status == dualca_ca::model::RecoveryStatus::Pending && !r.awaits_approval(now) {
            "pending (expired)"
        } else {
            r.status.as_str()
        };
        let _ = write!(
            out,
            "<tr id=\"recovery-{}\"><td>{}</td><td class=\"status\">{}</td><td class=\"reason\">{}</td>\
             <td class=\"method\">{}</td><td class=\"details\">{}</td><td class=\"operator\">{}</td>\
             <td class=\"approver\">{}</td><td>{}</td></tr>",
            esc(&r.id),
            esc(&rfc3339(r.created_at)),
            esc(status),
            esc(r.reason.name()),
            esc(&r.method),
            esc(&r.evidence),
            esc(&r.requested_by),
            esc(r.approved_by.as_deref().unwrap_or("—")),
            if r.high_assurance { "required" } else { "no" }
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// Whether the CA will ask for a second operator, as far as the page can tell (the CA decides):
/// a help-desk proofing level or a live client-auth certificate.
fn looks_high_assurance(view: &PersonView) -> bool {
    view.person.proofing_level == ProofingLevel::Helpdesk
        || view
            .certificates
            .iter()
            .any(|c| c.status == CertificateStatus::Valid && c.profile == "client-auth" && c.not_after > view.now)
}

fn options(choices: &[(&str, &str)], chosen: &str) -> String {
    choices
        .iter()
        .map(|(value, label)| {
            let selected = if chosen == *value { " selected" } else { "" };
            format!("<option value=\"{}\"{selected}>{}</option>", esc(value), esc(label))
        })
        .collect()
}

/// The recovery actions: the form to request one or, while one waits, its approval (for an
/// operator other than its requester) and its cancellation.
fn recovery_actions(session: &Session, view: &PersonView, filled: &ActionForm) -> String {
    let p = &view.person;
    let href = html::person_href(&p.email);
    let csrf = html::csrf_field(&session.csrf);
    let mut out = String::from("<h3>Recovery</h3>");
    if p.status != PersonStatus::Active {
        let _ = write!(
            out,
            "<p id=\"no-recovery\">A recovery needs an active person; this one is {}.</p>",
            esc(p.status.as_str())
        );
        return out;
    }
    let me = session.actor();
    if let Some(pending) = view.recoveries.iter().find(|r| r.status == dualca_ca::model::RecoveryStatus::Pending) {
        let base = format!("{href}/recoveries/{}", html::url_part(&pending.id));
        let _ = write!(
            out,
            "<p id=\"pending-recovery\">Recovery <code>{}</code> ({}, checked by {}) was requested by \
             <span id=\"requested-by\">{}</span> at {} and needs a second operator's approval until {}.</p>",
            esc(&pending.id),
            esc(pending.reason.name()),
            esc(&pending.method),
            esc(&pending.requested_by),
            esc(&rfc3339(pending.created_at)),
            esc(&rfc3339(pending.approval_expires_at()))
        );
        if !pending.awaits_approval(view.now) {
            out.push_str(
                "<p id=\"recovery-expired\">It expired unapproved; cancel it, or request a new recovery below, \
                 which cancels it.</p>",
            );
        } else if pending.requested_by == me {
            out.push_str(
                "<p id=\"awaiting-approval\">You requested it, so another operator must approve it (the \
                 two-person rule).</p>",
            );
        } else {
            let live = view.certificates.iter().filter(|c| c.status == CertificateStatus::Valid).count();
            let _ = write!(
                out,
                "<form method=\"post\" action=\"{}\" data-confirm=\"{}\" id=\"approve\">{csrf}\
                 <button type=\"submit\" class=\"danger\" id=\"approve-recovery\">Approve the recovery</button></form>",
                esc(&format!("{base}/approve")),
                esc(&format!(
                    "Approve the recovery of {} <{}> requested by {}? Their {live} live certificate(s) are revoked \
                     at once ({}), their ACME accounts and EAB keys stop working, and they are mailed a new \
                     enrollment link.",
                    p.display_name,
                    p.email,
                    pending.requested_by,
                    pending.reason.name()
                )),
            );
        }
        let _ = write!(
            out,
            "<form method=\"post\" action=\"{}\" id=\"cancel\">{csrf}\
             <button type=\"submit\" id=\"cancel-recovery\">Cancel the recovery</button></form>",
            esc(&format!("{base}/cancel")),
        );
        if pending.awaits_approval(view.now) {
            return out;
        }
    }
    let live = view.certificates.iter().filter(|c| c.status == CertificateStatus::Valid).count();
    let methods: Vec<(&str, &str)> = METHODS.to_vec();
    let _ = write!(
        out,
        "<p>For a person who lost a key or a device, after a check of their identity out of band. Their \
         certificates are revoked, their ACME accounts and EAB keys deactivated, and a new one-time enrollment \
         link and code go to them by mail; you never see the code.{}</p>\
         <form method=\"post\" action=\"{}\" data-confirm=\"{}\" id=\"recover\">{csrf}\
         <p><label>Revocation reason <select name=\"reason\" id=\"recovery-reason\">{}</select></label></p>\
         <p><label>Check <select name=\"recovery_method\" id=\"recovery-method\">{}</select></label></p>\
         <p><label for=\"recovery-evidence\">Evidence (what was checked, and how)</label><br>\
         <textarea name=\"recovery_evidence\" id=\"recovery-evidence\" rows=\"3\" required minlength=\"5\">{}</textarea></p>\
         <p><button type=\"submit\" class=\"danger\" id=\"recover-person\">Recover</button></p></form>",
        if looks_high_assurance(view) {
            " <strong id=\"two-person\">This person holds a client-auth certificate or was proofed by the help \
             desk: a second operator must approve the recovery before anything changes.</strong>"
        } else {
            ""
        },
        esc(&format!("{href}/recover")),
        esc(&format!(
            "Recover {} <{}>? Their {live} live certificate(s) are revoked (unless a second operator must \
             approve first), and their ACME accounts and EAB keys stop working.",
            p.display_name, p.email
        )),
        options(&RECOVERY_REASONS, &filled.reason),
        options(&methods, &filled.recovery_method),
        esc(&filled.recovery_evidence)
    );
    out
}

/// The help-desk actions, for roles that may take them.
fn actions(session: &Session, view: &PersonView, filled: &ActionForm) -> String {
    let p = &view.person;
    let href = html::person_href(&p.email);
    let csrf = html::csrf_field(&session.csrf);
    let mut out = String::from("<h2>Help desk</h2>");
    if p.status == PersonStatus::Left {
        out.push_str("<p id=\"no-actions\">This person has left; there is nothing more to do here.</p>");
        return out;
    }

    out.push_str("<h3>Record a help-desk check</h3>");
    if p.status == PersonStatus::Active {
        let options: String = METHODS
            .iter()
            .map(|(value, label)| {
                let selected = if filled.method == *value { " selected" } else { "" };
                format!("<option value=\"{}\"{selected}>{}</option>", esc(value), esc(label))
            })
            .collect();
        let _ = write!(
            out,
            "<form method=\"post\" action=\"{}\" id=\"proof\">{csrf}\
             <p><label>Method <select name=\"method\" id=\"method\">{options}</select></label></p>\
             <p><label for=\"evidence\">Evidence (what was checked, and how)</label><br>\
             <textarea name=\"evidence\" id=\"evidence\" rows=\"3\" required minlength=\"5\">{}</textarea></p>\
             <p><button type=\"submit\" id=\"record-check\">Record the check</button></p></form>",
            esc(&format!("{href}/proof")),
            esc(&filled.evidence)
        );
    } else {
        let _ = write!(
            out,
            "<p id=\"no-check\">A help-desk check needs an active person; this one is {} (an invited person enrolls first).</p>",
            esc(p.status.as_str())
        );
    }

    let _ = write!(
        out,
        "<h3>Mover</h3><p>A new address, a new manager, or both; empty fields stay as they are.</p>\
         <form method=\"post\" action=\"{}\" id=\"mover\">{csrf}<p>{}{}</p>\
         <p><button type=\"submit\" id=\"record-move\">Record the move</button></p></form>",
        esc(&format!("{href}/move")),
        input("email", "New email", &filled.email, "email", false),
        input("manager_email", "New manager email", &filled.manager_email, "email", false),
    );

    let live = view.certificates.iter().filter(|c| c.status == CertificateStatus::Valid).count();
    let _ = write!(
        out,
        "<h3>Leaver</h3><form method=\"post\" action=\"{}\" data-confirm=\"{}\" id=\"leaver\">{csrf}\
         <button type=\"submit\" class=\"danger\" id=\"record-leaver\">Leaver</button></form>",
        esc(&format!("{href}/leaver")),
        esc(&format!(
            "Record {} <{}> as a leaver? Their {live} live certificate(s) are revoked at once, and their ACME \
             accounts and EAB keys stop working.",
            p.display_name, p.email
        )),
    );

    out.push_str(&recovery_actions(session, view, filled));
    out
}

/// GET /admin/human/people/{email}
pub async fn show(req: HttpRequest, session: Session, email: web::Path<String>) -> Result<HttpResponse, PageError> {
    let state = state(&req)?;
    session.require(&state, Permission::ReadPeople, Track::Human, "read people").await?;
    let q = web::Query::<NoticeQuery>::from_query(req.query_string()).map(|q| q.into_inner()).unwrap_or_default();
    let view = load(&state, email.into_inner()).await?;
    let body = detail_body(&session, &view, notice(&q, &view), None, &ActionForm::default());
    Ok(html::ok(&title(&view.person), &session, &body))
}

/// Checks the form's CSRF token and the role, the same way for every action on a person.
async fn allowed(req: &HttpRequest, session: &Session, body: &[u8], action: &str) -> Result<ActionForm, PageError> {
    let state = state(req)?;
    session.accept_form(&state, body, Permission::ManagePeople, Track::Human, action).await
}

/// Where an action ends: the redirect it asked for, or its person's page again with the reason
/// the CA gave and the form as filled in.
async fn finish(
    req: &HttpRequest,
    session: &Session,
    email: String,
    outcome: Result<String, PageError>,
    filled: &ActionForm,
) -> Result<HttpResponse, PageError> {
    match outcome {
        Ok(location) => Ok(html::see_other(&location)),
        Err(e) => {
            let (status, why) = refusal(e)?;
            let state = state(req)?;
            let view = load(&state, email).await?;
            let body = detail_body(session, &view, None, Some(&why), filled);
            Ok(html::respond(status, html::document(&title(&view.person), Some(session), &body)))
        }
    }
}

/// POST /admin/human/people/{email}/proof: a help-desk check.
pub async fn proof(
    req: HttpRequest,
    session: Session,
    email: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, PageError> {
    let f = allowed(&req, &session, &body, "proof identities").await?;
    let email = email.into_inner();
    let (ca, who, operator) = (state(&req)?.ca.clone(), email.clone(), session.actor());
    let (method, evidence) = (f.method.clone(), f.evidence.trim().to_string());
    let outcome = blocking(move || ca.proof_by_helpdesk(&who, &method, &evidence, &operator))
        .await
        .map(|p| format!("{}?done=proofed", html::person_href(&p.email)));
    finish(&req, &session, email, outcome, &f).await
}

/// POST /admin/human/people/{email}/move: a new address or manager.
pub async fn mover(
    req: HttpRequest,
    session: Session,
    email: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, PageError> {
    let f = allowed(&req, &session, &body, "record movers").await?;
    let email = email.into_inner();
    let new_email = Some(f.email.trim().to_string()).filter(|e| !e.is_empty());
    let new_manager = Some(f.manager_email.trim().to_string()).filter(|m| !m.is_empty());
    let outcome = if new_email.is_none() && new_manager.is_none() {
        Err(PageError::bad_request("Give a new email, a new manager email, or both."))
    } else {
        let (ca, who, actor) = (state(&req)?.ca.clone(), email.clone(), session.actor());
        blocking(move || ca.person_moves(&who, new_email.as_deref(), new_manager.as_deref(), &actor))
            .await
            .map(|p| format!("{}?done=moved", html::person_href(&p.email)))
    };
    finish(&req, &session, email, outcome, &f).await
}

/// POST /admin/human/people/{email}/leaver
pub async fn leaver(
    req: HttpRequest,
    session: Session,
    email: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, PageError> {
    let f = allowed(&req, &session, &body, "record leavers").await?;
    let email = email.into_inner();
    let (ca, who, actor) = (state(&req)?.ca.clone(), email.clone(), session.actor());
    let outcome = blocking(move || ca.person_leaves(&who, &actor))
        .await
        .map(|revoked| format!("{}?done=left&revoked={}", html::person_href(&email), revoked.len()));
    finish(&req, &session, email, outcome, &f).await
}

/// POST /admin/human/people/{email}/recover: a help-desk recovery, carried out at once or left
/// pending for a second operator.
pub async fn recover(
    req: HttpRequest,
    session: Session,
    email: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, PageError> {
    let f = allowed(&req, &session, &body, "recover people").await?;
    let email = email.into_inner();
    let (ca, who, operator) = (state(&req)?.ca.clone(), email.clone(), session.actor());
    let spec = RecoverySpec {
        reason: f.reason.clone(),
        method: f.recovery_method.clone(),
        evidence: f.recovery_evidence.clone(),
    };
    let outcome = blocking(move || ca.request_recovery(&who, &spec, &operator)).await.map(|o| {
        let href = html::person_href(&email);
        match o.recovery.status {
            dualca_ca::model::RecoveryStatus::Pending => format!("{href}?done=recovery-pending"),
            _ => format!("{href}?done=recovered&revoked={}", o.revoked_certificates.len()),
        }
    });
    finish(&req, &session, email, outcome, &f).await
}

/// POST /admin/human/people/{email}/recoveries/{id}/approve: the second operator's approval.
pub async fn approve_recovery(
    req: HttpRequest,
    session: Session,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, PageError> {
    let f = allowed(&req, &session, &body, "approve recoveries").await?;
    let (email, id) = path.into_inner();
    let (ca, who, operator) = (state(&req)?.ca.clone(), email.clone(), session.actor());
    let outcome = blocking(move || ca.approve_recovery(&who, &id, &operator))
        .await
        .map(|o| format!("{}?done=recovered&revoked={}", html::person_href(&email), o.revoked_certificates.len()));
    finish(&req, &session, email, outcome, &f).await
}

/// POST /admin/human/people/{email}/recoveries/{id}/cancel
pub async fn cancel_recovery(
    req: HttpRequest,
    session: Session,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, PageError> {
    let f = allowed(&req, &session, &body, "cancel recoveries").await?;
    let (email, id) = path.into_inner();
    let (ca, who, operator) = (state(&req)?.ca.clone(), email.clone(), session.actor());
    let outcome = blocking(move || ca.cancel_recovery(&who, &id, &operator))
        .await
        .map(|_| format!("{}?done=recovery-cancelled", html::person_href(&email)));
    finish(&req, &session, email, outcome, &f).await
}
