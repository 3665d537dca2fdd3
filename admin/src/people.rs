//! The human track's people API: joiners, movers, leavers, help-desk proofing and recovery;
//! and the public enrollment page a joiner's invite or a recovery links to.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use dualca_ca::clock::rfc3339;
use dualca_ca::model::{JoinerSpec, Person, PersonStatus, Recovery, RecoveryOutcome, RecoverySpec, RecoveryStatus};
use dualca_ca::{Ca, Track};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{AdminState, Permission, Principal};
use crate::pages::html::esc;
use crate::problem::{optional_json, required_json, AdminProblem};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/api/human/people", web::get().to(list))
        .route("/admin/api/human/people", web::post().to(join))
        .route("/admin/api/human/people/{email}", web::get().to(show))
        .route("/admin/api/human/people/{email}", web::put().to(mover))
        .route("/admin/api/human/people/{email}/leaver", web::post().to(leaver))
        .route("/admin/api/human/people/{email}/proof", web::post().to(proof))
        .route("/admin/api/human/people/{email}/recover", web::post().to(recover))
        .route("/admin/api/human/people/{email}/recoveries", web::get().to(recoveries))
        .route("/admin/api/human/people/{email}/recoveries/{id}/approve", web::post().to(approve_recovery))
        .route("/admin/api/human/people/{email}/recoveries/{id}/cancel", web::post().to(cancel_recovery));
}

/// The enrollment page an invite or a recovery links to (`<public_url>/enroll/<token>`): public,
/// so it is served with the other public routes on every listener, the main one included when
/// `[admin] listen` gives the admin routes a listener of their own.
pub fn enrollment_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/enroll/{token}", web::get().to(enroll_form)).route("/enroll/{token}", web::post().to(enroll_submit));
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> dualca_ca::Result<T> + Send + 'static,
) -> Result<T, AdminProblem> {
    Ok(web::block(f).await??)
}

pub fn person_json(p: &Person) -> Value {
    json!({
        "email": p.email, "display_name": p.display_name, "employee_id": p.employee_id, "manager_email": p.manager_email,
        "status": p.status.as_str(), "proofing_level": p.proofing_level.as_str(),
        "created_at": rfc3339(p.created_at), "updated_at": rfc3339(p.updated_at), "left_at": p.left_at.map(rfc3339),
    })
}

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
}

async fn list(
    state: web::Data<AdminState>,
    principal: Principal,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, AdminProblem> {
    principal.require(&state, Permission::ReadPeople, Some(Track::Human), "list people").await?;
    let status = match q.into_inner().status {
        None => None,
        Some(s) => Some(PersonStatus::parse(&s).ok_or_else(|| AdminProblem::bad_request(format!("status {s:?}")))?),
    };
    let ca = state.ca.clone();
    let people = blocking(move || ca.people(status)).await?;
    Ok(HttpResponse::Ok().json(json!({ "people": people.iter().map(person_json).collect::<Vec<_>>() })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinBody {
    email: String,
    display_name: String,
    employee_id: String,
    manager_email: String,
}

/// Joiner: the person is created, invited, and mailed a one-time enrollment link and code.
async fn join(
    state: web::Data<AdminState>,
    principal: Principal,
    body: web::Json<JoinBody>,
) -> Result<HttpResponse, AdminProblem> {
    principal.require(&state, Permission::ManagePeople, Some(Track::Human), "register joiners").await?;
    let b = body.into_inner();
    let spec = JoinerSpec {
        email: b.email,
        display_name: b.display_name,
        employee_id: b.employee_id,
        manager_email: b.manager_email,
    };
    let (ca, actor) = (state.ca.clone(), principal.actor());
    let invitation = blocking(move || ca.person_joins(&spec, &actor)).await?;
    let mut body = person_json(&invitation.person);
    body["invite_expires_at"] = json!(rfc3339(invitation.expires_at));
    Ok(HttpResponse::build(StatusCode::CREATED).json(body))
}

async fn show(
    state: web::Data<AdminState>,
    principal: Principal,
    email: web::Path<String>,
) -> Result<HttpResponse, AdminProblem> {
    principal.require(&state, Permission::ReadPeople, Some(Track::Human), "read people").await?;
    let (ca, email) = (state.ca.clone(), email.into_inner());
    let (person, history) = blocking(move || Ok((ca.person(&email)?, ca.proofing_history(&email)?))).await?;
    let mut body = person_json(&person);
    body["proofing"] = json!(history
        .iter()
        .map(|(level, method, evidence, operator, at)| json!({"level": level, "method": method, "evidence": evidence, "operator": operator, "at": rfc3339(*at)}))
        .collect::<Vec<_>>());
    Ok(HttpResponse::Ok().json(body))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MoverBody {
    email: Option<String>,
    manager_email: Option<String>,
}

async fn mover(
    state: web::Data<AdminState>,
    principal: Principal,
    email: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, AdminProblem> {
    principal.require(&state, Permission::ManagePeople, Some(Track::Human), "record movers").await?;
    let b: MoverBody = optional_json(&body)?;
    let (ca, email, actor) = (state.ca.clone(), email.into_inner(), principal.actor());
    let person =
        blocking(move || ca.person_moves(&email, b.email.as_deref(), b.manager_email.as_deref(), &actor)).await?;
    Ok(HttpResponse::Ok().json(person_json(&person)))
}

async fn leaver(
    state: web::Data<AdminState>,
    principal: Principal,
    email: web::Path<String>,
) -> Result<HttpResponse, AdminProblem> {
    principal.require(&state, Permission::ManagePeople, Some(Track::Human), "record leavers").await?;
    let (ca, email, actor) = (state.ca.clone(), email.into_inner(), principal.actor());
    let revoked = blocking(move || ca.person_leaves(&email, &actor)).await?;
    Ok(HttpResponse::Ok().json(json!({ "status": "left", "revoked_certificates": revoked })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofBody {
    method: String,
    evidence: String,
}

/// A help-desk check out of band: in person, by video, or by a call back to the manager.
async fn proof(
    state: web::Data<AdminState>,
    principal: Principal,
    email: web::Path<String>,
    body: web::Json<ProofBody>,
) -> Result<HttpResponse, AdminProblem> {
    principal.require(&state, Permission::ManagePeople, Some(Track::Human), "proof identities").await?;
    let b = body.into_inner();
    let (ca, email, operator) = (state.ca.clone(), email.into_inner(), principal.actor());
    let person = blocking(move || ca.proof_by_helpdesk(&email, &b.method, &b.evidence, &operator)).await?;
    Ok(HttpResponse::Ok().json(person_json(&person)))
}

pub fn recovery_json(r: &Recovery) -> Value {
    let mut body = json!({
        "id": r.id, "status": r.status.as_str(), "high_assurance": r.high_assurance, "reason": r.reason.name(),
        "method": r.method, "evidence": r.evidence, "requested_by": r.requested_by, "approved_by": r.approved_by,
        "cancelled_by": r.cancelled_by, "created_at": rfc3339(r.created_at), "completed_at": r.completed_at.map(rfc3339),
        "cancelled_at": r.cancelled_at.map(rfc3339),
    });
    if r.status == RecoveryStatus::Pending {
        body["approval_expires_at"] = json!(rfc3339(r.approval_expires_at()));
    }
    body
}

fn outcome_json(o: &RecoveryOutcome) -> Value {
    let mut body = recovery_json(&o.recovery);
    if o.recovery.status == RecoveryStatus::Completed {
        body["revoked_certificates"] = json!(o.revoked_certificates);
        body["deactivated_accounts"] = json!(o.deactivated_accounts);
        body["link_expires_at"] = json!(o.link_expires_at.map(rfc3339));
    }
    body
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoverBody {
    reason: String,
    method: String,
    evidence: String,
}

/// Help-desk recovery after a check out of band. 201 with the recovery: `completed` when it was
/// carried out at once, `pending` when it needs a second operator's approval. The link and
/// code go to the person by mail only.
async fn recover(
    state: web::Data<AdminState>,
    principal: Principal,
    email: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, AdminProblem> {
    principal.require(&state, Permission::ManagePeople, Some(Track::Human), "recover people").await?;
    let b: RecoverBody = required_json(&body)?;
    let spec = RecoverySpec { reason: b.reason, method: b.method, evidence: b.evidence };
    let (ca, email, operator) = (state.ca.clone(), email.into_inner(), principal.actor());
    let outcome = blocking(move || ca.request_recovery(&email, &spec, &operator)).await?;
    Ok(HttpResponse::build(StatusCode::CREATED).json(outcome_json(&outcome)))
}

async fn recoveries(
    state: web::Data<AdminState>,
    principal: Principal,
    email: web::Path<String>,
) -> Result<HttpResponse, AdminProblem> {
    principal.require(&state, Permission::ReadPeople, Some(Track::Human), "read people").await?;
    let (ca, email) = (state.ca.clone(), email.into_inner());
    let list = blocking(move || ca.recoveries(&email)).await?;
    Ok(HttpResponse::Ok().json(json!({ "recoveries": list.iter().map(recovery_json).collect::<Vec<_>>() })))
}

/// The second operator's approval of a pending recovery, which carries it out.
async fn approve_recovery(
    state: web::Data<AdminState>,
    principal: Principal,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AdminProblem> {
    principal.require(&state, Permission::ManagePeople, Some(Track::Human), "approve recoveries").await?;
    let ((email, id), ca, operator) = (path.into_inner(), state.ca.clone(), principal.actor());
    let outcome = blocking(move || ca.approve_recovery(&email, &id, &operator)).await?;
    Ok(HttpResponse::Ok().json(outcome_json(&outcome)))
}

async fn cancel_recovery(
    state: web::Data<AdminState>,
    principal: Principal,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AdminProblem> {
    principal.require(&state, Permission::ManagePeople, Some(Track::Human), "cancel recoveries").await?;
    let ((email, id), ca, operator) = (path.into_inner(), state.ca.clone(), principal.actor());
    let recovery = blocking(move || ca.cancel_recovery(&email, &id, &operator)).await?;
    Ok(HttpResponse::Ok().json(recovery_json(&recovery)))
}

fn page(status: StatusCode, title: &str, body: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("cache-control", "no-store"))
        .insert_header(("content-security-policy", "default-src 'none'; form-action 'self'; frame-ancestors 'none'"))
        .body(format!(
            "<!doctype html><html><head><meta charset=utf-8><title>{t}</title></head><body><h1>{t}</h1>{body}</body></html>",
            t = esc(title)
        ))
}

/// The link in a joiner's invite: asks for the code from the same mail.
async fn enroll_form(token: web::Path<String>) -> HttpResponse {
    let action = format!("/enroll/{}", esc(&token));
    page(
        StatusCode::OK,
        "Enroll",
        &format!("<form method=post action=\"{action}\"><label>Code from your invite <input name=code autocomplete=one-time-code required></label> <button>Enroll</button></form>"),
    )
}

#[derive(Deserialize)]
pub struct EnrollForm {
    code: String,
}

/// Checks the code; on success shows the person's EAB credentials for the human directory,
/// once.
async fn enroll_submit(ca: web::Data<Ca>, token: web::Path<String>, form: web::Form<EnrollForm>) -> HttpResponse {
    let directory = format!("{}/acme/human/directory", ca.public_url());
    let (ca, token, code) = (ca.into_inner(), token.into_inner(), form.into_inner().code);
    match web::block(move || ca.complete_enrollment(&token, &code)).await {
        Ok(Ok((person, creds))) => {
            page(
                StatusCode::OK,
                "Enrolled",
                &format!(
                    "<p>Welcome, {name}. Your address {email} is confirmed.</p>\
                     <p>Your ACME credentials for <code>{dir}</code> are shown only now:</p>\
                     <dl><dt>EAB kid</dt><dd><code id=kid>{kid}</code></dd><dt>EAB HMAC key</dt><dd><code id=hmac>{hmac}</code></dd></dl>\
                     <p>Any ACME client with external account binding can use them (certbot: <code>--eab-kid</code> and <code>--eab-hmac-key=</code>, joined to the key by <code>=</code>, since a key may begin with <code>-</code>).</p>",
                    name = esc(&person.display_name),
                    email = esc(&person.email),
                    dir = esc(&directory),
                    kid = esc(&creds.kid),
                    hmac = esc(&creds.hmac_key_b64),
                ),
            )
        }
        _ => page(
            StatusCode::FORBIDDEN,
            "Not enrolled",
            "<p>This link or code is not valid, or was already used. Ask the help desk for a new invite.</p>",
        ),
    }
}
