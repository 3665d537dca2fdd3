//! The admin JSON API under `/admin/api`. `ROUTES` is the one list of routes: the OpenAPI
//! document is generated from it, and the tests check that every entry is served and that the
//! document and the handlers agree (registration itself is by hand, in `configure`).

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use dualca_ca::clock::rfc3339;
use dualca_ca::hierarchy::der_to_pem;
use dualca_ca::model::{CertificateRecord, CertificateStatus, RevocationReason};
use dualca_ca::{AuditFilter, AuditRecord, CertificateFilter, Track};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{AdminState, Permission, Principal};
use crate::problem::AdminProblem;

pub struct RouteSpec {
    pub method: &'static str,
    /// actix pattern; `{track}` is machine or human.
    pub path: &'static str,
    /// None: public, no token needed.
    pub permission: Option<Permission>,
    pub summary: &'static str,
}

pub const ROUTES: &[RouteSpec] = &[
    RouteSpec {
        method: "GET",
        path: "/admin/api/whoami",
        permission: Some(Permission::Authenticated),
        summary: "The caller's subject and role",
    },
    RouteSpec {
        method: "GET",
        path: "/admin/api/{track}/outbox",
        permission: Some(Permission::ReadMail),
        summary: "A track's undelivered mail, oldest first: still being tried, or given up",
    },
    RouteSpec {
        method: "POST",
        path: "/admin/api/{track}/outbox/{id}/retry",
        permission: Some(Permission::ManageMail),
        summary: "Send a given-up mail again: its attempts start over, due at once (audited)",
    },
    RouteSpec {
        method: "GET",
        path: "/admin/api/{track}/dashboard",
        permission: Some(Permission::ReadDashboard),
        summary: "Counts for a track's dashboard",
    },
    RouteSpec {
        method: "GET",
        path: "/admin/api/{track}/audit",
        permission: Some(Permission::ReadAudit),
        summary: "A track's audit events, filtered and paged; format=json, jsonl or csv",
    },
    RouteSpec {
        method: "GET",
        path: "/admin/api/{track}/audit/checkpoint",
        permission: None,
        summary: "The head of a track's audit chain, signed with the admin Ed25519 key",
    },
    RouteSpec {
        method: "GET",
        path: "/admin/api/{track}/certificates",
        permission: Some(Permission::ReadCertificates),
        summary: "Search a track's certificates",
    },
    RouteSpec {
        method: "GET",
        path: "/admin/api/{track}/certificates/{serial}",
        permission: Some(Permission::ReadCertificates),
        summary: "One certificate with its history",
    },
    RouteSpec {
        method: "POST",
        path: "/admin/api/{track}/certificates/{serial}/revoke",
        permission: Some(Permission::RevokeCertificates),
        summary: "Revoke a certificate",
    },
    RouteSpec {
        method: "GET",
        path: "/admin/api/openapi.json",
        permission: None,
        summary: "This API's OpenAPI description",
    },
    RouteSpec {
        method: "GET",
        path: "/admin/api/machine/assets",
        permission: Some(Permission::ReadAssets),
        summary: "List assets (status, owner_team, service, environment, kind)",
    },
    RouteSpec {
        method: "POST",
        path: "/admin/api/machine/assets",
        permission: Some(Permission::ManageAssets),
        summary: "Register an asset",
    },
    RouteSpec {
        method: "GET",
        path: "/admin/api/machine/assets/{name}",
        permission: Some(Permission::ReadAssets),
        summary: "One asset with its certificates",
    },
    RouteSpec {
        method: "PUT",
        path: "/admin/api/machine/assets/{name}",
        permission: Some(Permission::ManageAssets),
        summary: "Update an asset",
    },
    RouteSpec {
        method: "POST",
        path: "/admin/api/machine/assets/{name}/decommission",
        permission: Some(Permission::ManageAssets),
        summary: "Decommission an asset: revoke its certificates, deactivate its accounts and EAB keys",
    },
    RouteSpec {
        method: "POST",
        path: "/admin/api/machine/assets/{name}/credentials",
        permission: Some(Permission::ManageAssets),
        summary: "New EAB credentials for an asset (shown once)",
    },
    RouteSpec {
        method: "POST",
        path: "/admin/api/machine/assets/sync",
        permission: Some(Permission::ManageAssets),
        summary: "Sync the whole inventory (JSON or CSV): the plan only, or apply=true; force=true passes the decommission guard",
    },
    RouteSpec {
        method: "POST",
        path: "/admin/api/machine/assets/{name}/redeploy",
        permission: Some(Permission::ManageAssets),
        summary: "Redeploy: supersede the asset's current certificates after a grace period",
    },
    RouteSpec {
        method: "POST",
        path: "/admin/api/machine/eab/{kid}/revoke",
        permission: Some(Permission::ManageAssets),
        summary: "Revoke EAB credentials",
    },
    RouteSpec {
        method: "GET",
        path: "/admin/api/human/people",
        permission: Some(Permission::ReadPeople),
        summary: "List people (status)",
    },
    RouteSpec {
        method: "POST",
        path: "/admin/api/human/people",
        permission: Some(Permission::ManagePeople),
        summary: "Joiner: register a person and mail the enrollment invite",
    },
    RouteSpec {
        method: "GET",
        path: "/admin/api/human/people/{email}",
        permission: Some(Permission::ReadPeople),
        summary: "One person with their proofing history",
    },
    RouteSpec {
        method: "PUT",
        path: "/admin/api/human/people/{email}",
        permission: Some(Permission::ManagePeople),
        summary: "Mover: a new address or manager",
    },
    RouteSpec {
        method: "POST",
        path: "/admin/api/human/people/{email}/leaver",
        permission: Some(Permission::ManagePeople),
        summary: "Leaver: revoke every certificate, deactivate accounts, mail person and manager",
    },
    RouteSpec {
        method: "POST",
        path: "/admin/api/human/people/{email}/proof",
        permission: Some(Permission::ManagePeople),
        summary: "Help-desk proofing: in-person, video or manager-callback, with evidence",
    },
    RouteSpec {
        method: "POST",
        path: "/admin/api/human/people/{email}/recover",
        permission: Some(Permission::ManagePeople),
        summary: "Help-desk recovery: revoke (keyCompromise or superseded), deactivate accounts and EAB keys, mail a new enrollment link; pending when a second operator must approve",
    },
    RouteSpec {
        method: "GET",
        path: "/admin/api/human/people/{email}/recoveries",
        permission: Some(Permission::ReadPeople),
        summary: "A person's recoveries, newest first",
    },
    RouteSpec {
        method: "POST",
        path: "/admin/api/human/people/{email}/recoveries/{id}/approve",
        permission: Some(Permission::ManagePeople),
        summary: "Approve a pending recovery (an operator other than its requester) and carry it out",
    },
    RouteSpec {
        method: "POST",
        path: "/admin/api/human/people/{email}/recoveries/{id}/cancel",
        permission: Some(Permission::ManagePeople),
        summary: "Cancel a pending recovery",
    },
];

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/api/whoami", web::get().to(whoami))
        .route("/admin/api/openapi.json", web::get().to(openapi))
        .route("/admin/api/{track}/dashboard", web::get().to(dashboard))
        .route("/admin/api/{track}/audit", web::get().to(audit))
        .route("/admin/api/{track}/audit/checkpoint", web::get().to(checkpoint))
        .route("/admin/api/{track}/certificates", web::get().to(certificates))
        .route("/admin/api/{track}/certificates/{serial}", web::get().to(certificate))
        .route("/admin/api/{track}/certificates/{serial}/revoke", web::post().to(revoke))
        .route("/admin/api/{track}/outbox", web::get().to(outbox))
        .route("/admin/api/{track}/outbox/{id}/retry", web::post().to(retry_mail))
        .configure(crate::assets::configure)
        .configure(crate::people::configure);
}

fn track_of(text: &str) -> Result<Track, AdminProblem> {
    text.parse().map_err(|_| AdminProblem::not_found(format!("no track {text:?}")))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> dualca_ca::Result<T> + Send + 'static,
) -> Result<T, AdminProblem> {
    Ok(web::block(f).await??)
}

async fn whoami(principal: Principal) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "subject": principal.subject, "role": principal.role.as_str() }))
}

async fn dashboard(
    state: web::Data<AdminState>,
    principal: Principal,
    track: web::Path<String>,
) -> Result<HttpResponse, AdminProblem> {
    let track = track_of(&track)?;
    principal.require(&state, Permission::ReadDashboard, Some(track), "read the dashboard").await?;
    let ca = state.ca.clone();
    let counts = blocking(move || ca.certificate_counts(track)).await?;
    Ok(HttpResponse::Ok().json(json!({
        "track": track.as_str(),
        "active_certificates": counts.active,
        "expiring_within_7_days": counts.expiring_within_7_days,
        "revoked_today": counts.revoked_since,
        "revoked_total": counts.revoked,
    })))
}

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    from: Option<String>,
    to: Option<String>,
    action: Option<String>,
    actor: Option<String>,
    subject: Option<String>,
    serial: Option<String>,
    cursor: Option<i64>,
    limit: Option<i64>,
    format: Option<String>,
}

/// RFC 3339 or Unix seconds.
fn parse_time(field: &str, text: &str) -> Result<i64, AdminProblem> {
    if let Ok(secs) = text.parse::<i64>() {
        return Ok(secs);
    }
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| AdminProblem::bad_request(format!("{field} must be RFC 3339 or Unix seconds, not {text:?}")))
}

pub fn audit_json(e: &AuditRecord) -> Value {
    json!({
        "track": e.track.as_str(), "seq": e.seq, "at": rfc3339(e.at), "actor": e.actor, "action": e.action,
        "subject": e.subject, "details": e.details, "prev_hash": e.prev_hash, "hash": e.hash,
    })
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// Exports stop after this many events; the cursor continues from there.
const EXPORT_LIMIT: i64 = 100_000;

async fn audit(
    state: web::Data<AdminState>,
    principal: Principal,
    track: web::Path<String>,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, AdminProblem> {
    let track = track_of(&track)?;
    principal.require(&state, Permission::ReadAudit, Some(track), "read the audit log").await?;
    let q = query.into_inner();
    let filter = AuditFilter {
        from: q.from.as_deref().map(|t| parse_time("from", t)).transpose()?,
        to: q.to.as_deref().map(|t| parse_time("to", t)).transpose()?,
        action: q.action,
        actor: q.actor,
        subject: q.subject,
        serial: q.serial.map(|s| s.to_ascii_lowercase()),
    };
    let format = q.format.unwrap_or_else(|| "json".into());
    let after = q.cursor.unwrap_or(0);
    let limit = match format.as_str() {
        "json" => q.limit.unwrap_or(100).clamp(1, 1000),
        "jsonl" | "csv" => q.limit.unwrap_or(EXPORT_LIMIT).clamp(1, EXPORT_LIMIT),
        other => return Err(AdminProblem::bad_request(format!("format must be json, jsonl or csv, not {other:?}"))),
    };
    let ca = state.ca.clone();
    let events = blocking(move || ca.audit_events(track, &filter, after, limit)).await?;
    let next = (events.len() as i64 == limit).then(|| events.last().map(|e| e.seq)).flatten();
    let mut res = match format.as_str() {
        "jsonl" => {
            let body: String = events.iter().map(|e| audit_json(e).to_string() + "\n").collect();
            HttpResponse::Ok().content_type("application/x-ndjson").body(body)
        }
        "csv" => {
            let mut body = String::from("track,seq,at,actor,action,subject,details,prev_hash,hash\n");
            for e in &events {
                let fields = [
                    e.track.as_str().to_string(),
                    e.seq.to_string(),
                    rfc3339(e.at),
                    e.actor.clone(),
                    e.action.clone(),
                    e.subject.clone(),
                    e.details.to_string(),
                    e.prev_hash.clone(),
                    e.hash.clone(),
                ];
                body.push_str(&fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
                body.push('\n');
            }
            HttpResponse::Ok().content_type("text/csv; charset=utf-8").body(body)
        }
        _ => HttpResponse::Ok().json(json!({
            "events": events.iter().map(audit_json).collect::<Vec<_>>(),
            "next_cursor": next,
        })),
    };
    if let Some(next) = next {
        if let Ok(v) = header::HeaderValue::from_str(&next.to_string()) {
            res.headers_mut().insert(header::HeaderName::from_static("x-next-cursor"), v);
        }
    }
    Ok(res)
}

async fn checkpoint(state: web::Data<AdminState>, track: web::Path<String>) -> Result<HttpResponse, AdminProblem> {
    let track = track_of(&track)?;
    let ca = state.ca.clone();
    let head = blocking(move || ca.audit_head(track)).await?;
    let (seq, hash) = head.map(|h| (h.seq, h.hash)).unwrap_or((0, dualca_ca::audit::GENESIS_HASH.to_string()));
    let payload = json!({ "track": track.as_str(), "seq": seq, "hash": hash, "iat": state.ca.clock.unix() });
    let signed = state.auth.sign_checkpoint(&payload).map_err(AdminProblem::internal)?;
    Ok(HttpResponse::Ok().json(json!({
        "track": track.as_str(), "seq": seq, "hash": hash, "checkpoint": signed, "public_key": state.auth.public_key_pem,
    })))
}

#[derive(Deserialize)]
pub struct CertificateQuery {
    account: Option<String>,
    asset: Option<String>,
    person: Option<String>,
    identifier: Option<String>,
    status: Option<String>,
    expiring_within: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

pub fn certificate_json(c: &CertificateRecord) -> Value {
    json!({
        "serial": c.serial, "track": c.track.as_str(), "status": c.status.as_str(), "profile": c.profile,
        "identifiers": c.identifiers.iter().map(|i| json!({"type": i.kind.as_str(), "value": i.value})).collect::<Vec<_>>(),
        "not_before": rfc3339(c.not_before), "not_after": rfc3339(c.not_after),
        "account": c.account_id, "revocation_reason": c.revocation_reason.and_then(|r| RevocationReason::from_code(r.into())).map(|r| r.name()),
        "revoked_at": c.revoked_at.map(rfc3339), "replaced_by": c.replaced_by,
    })
}

pub fn parse_within(text: &str) -> Result<i64, AdminProblem> {
    let (n, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: i64 =
        n.parse().map_err(|_| AdminProblem::bad_request(format!("expiring_within {text:?} is not like 7d or 12h")))?;
    match unit {
        "d" => Ok(n * 86400),
        "h" => Ok(n * 3600),
        "s" | "" => Ok(n),
        _ => Err(AdminProblem::bad_request(format!("expiring_within {text:?} is not like 7d or 12h"))),
    }
}

async fn certificates(
    state: web::Data<AdminState>,
    principal: Principal,
    track: web::Path<String>,
    query: web::Query<CertificateQuery>,
) -> Result<HttpResponse, AdminProblem> {
    let track = track_of(&track)?;
    principal.require(&state, Permission::ReadCertificates, Some(track), "read certificates").await?;
    let q = query.into_inner();
    let now = state.ca.clock.unix();
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(
            CertificateStatus::parse(s)
                .ok_or_else(|| AdminProblem::bad_request(format!("status must be valid or revoked, not {s:?}")))?,
        ),
    };
    let filter = CertificateFilter {
        account: q.account,
        asset: q.asset,
        person: q.person,
        identifier: q.identifier,
        status,
        expiring_before: q.expiring_within.as_deref().map(parse_within).transpose()?.map(|w| now + w),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let ca = state.ca.clone();
    let cursor = q.cursor;
    let found = blocking(move || ca.search_certificates(track, &filter, cursor.as_deref(), limit)).await?;
    let next = (found.len() as i64 == limit).then(|| found.last().map(|c| c.serial.clone())).flatten();
    Ok(HttpResponse::Ok().json(json!({
        "certificates": found.iter().map(certificate_json).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}

async fn certificate(
    state: web::Data<AdminState>,
    principal: Principal,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AdminProblem> {
    let (track, serial) = path.into_inner();
    let track = track_of(&track)?;
    principal.require(&state, Permission::ReadCertificates, Some(track), "read certificates").await?;
    let ca = state.ca.clone();
    let serial = serial.to_ascii_lowercase();
    let (cert, history) = blocking(move || ca.certificate_history(track, &serial)).await?;
    let mut body = certificate_json(&cert);
    body["pem"] = json!(der_to_pem(&cert.der));
    body["history"] = json!(history.iter().map(audit_json).collect::<Vec<_>>());
    Ok(HttpResponse::Ok().json(body))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    reason: Option<String>,
}

async fn revoke(
    state: web::Data<AdminState>,
    principal: Principal,
    path: web::Path<(String, String)>,
    raw: web::Bytes,
) -> Result<HttpResponse, AdminProblem> {
    let (track, serial) = path.into_inner();
    let track = track_of(&track)?;
    principal.require(&state, Permission::RevokeCertificates, Some(track), "revoke certificates").await?;
    let body: RevokeBody = crate::problem::optional_json(&raw)?;
    let reason_text = body.reason.unwrap_or_else(|| "unspecified".into());
    let reason = RevocationReason::parse(&reason_text)
        .ok_or_else(|| AdminProblem::bad_request(format!("unknown revocation reason {reason_text:?}")))?;
    let ca = state.ca.clone();
    let operator = principal.actor();
    let serial_for_call = serial.clone();
    blocking(move || ca.revoke_by_operator(Some(track), &serial_for_call, reason, &operator)).await?;
    crate::metrics::REVOCATIONS.with_label_values(&[track.as_str()]).inc();
    Ok(HttpResponse::build(StatusCode::OK)
        .json(json!({ "serial": serial.to_ascii_lowercase(), "status": "revoked", "reason": reason.name() })))
}

/// Undelivered mail, as operators see it. A challenge mail's subject is half of its token,
/// so it is not shown.
fn mail_json(mail: &dualca_ca::QueuedMail) -> Value {
    json!({
        "id": mail.id,
        "recipient": mail.recipient,
        "subject": mail.subject_for_operators(),
        "created_at": rfc3339(mail.created_at),
        "attempts": mail.attempts,
        "given_up": mail.given_up(),
        "next_attempt_at": rfc3339(mail.next_attempt_at),
        "last_error": mail.last_error,
    })
}

/// At most this many undelivered mails are listed.
const OUTBOX_LIST_LIMIT: i64 = 500;

async fn outbox(
    state: web::Data<AdminState>,
    principal: Principal,
    track: web::Path<String>,
) -> Result<HttpResponse, AdminProblem> {
    let track = track_of(&track)?;
    principal.require(&state, Permission::ReadMail, Some(track), "read the outbox").await?;
    let ca = state.ca.clone();
    let mail = blocking(move || ca.undelivered_mail_of(track, OUTBOX_LIST_LIMIT)).await?;
    Ok(HttpResponse::Ok().json(json!({ "mail": mail.iter().map(mail_json).collect::<Vec<_>>() })))
}

async fn retry_mail(
    state: web::Data<AdminState>,
    principal: Principal,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AdminProblem> {
    let (track, id) = path.into_inner();
    let track = track_of(&track)?;
    principal.require(&state, Permission::ManageMail, Some(track), "send mail again").await?;
    let ca = state.ca.clone();
    let operator = principal.actor();
    let mail = blocking(move || ca.retry_mail(track, &id, &operator)).await?;
    Ok(HttpResponse::Ok().json(mail_json(&mail)))
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(crate::openapi::document())
}
