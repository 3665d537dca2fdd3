//! The machine track's inventory API: register, update, list, show with certificates,
//! decommission, and EAB credentials.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use dualca_ca::clock::rfc3339;
use dualca_ca::model::{Asset, AssetKind, AssetSpec, AssetStatus};
use dualca_ca::{AssetQuery, CertificateFilter, Track};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::certificate_json;
use crate::auth::{AdminState, Permission, Principal};
use crate::problem::AdminProblem;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/api/machine/assets/sync", web::post().to(sync))
        .route("/admin/api/machine/assets", web::get().to(list))
        .route("/admin/api/machine/assets", web::post().to(register))
        .route("/admin/api/machine/assets/{name}", web::get().to(show))
        .route("/admin/api/machine/assets/{name}", web::put().to(update))
        .route("/admin/api/machine/assets/{name}/decommission", web::post().to(decommission))
        .route("/admin/api/machine/assets/{name}/credentials", web::post().to(credentials))
        .route("/admin/api/machine/assets/{name}/redeploy", web::post().to(redeploy))
        .route("/admin/api/machine/eab/{kid}/revoke", web::post().to(revoke_credentials));
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> dualca_ca::Result<T> + Send + 'static,
) -> Result<T, AdminProblem> {
    Ok(web::block(f).await??)
}

#[derive(Deserialize, Clone)]
pub struct IdentifierBody {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

/// An asset as the API and the inventory sync take it.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct AssetBody {
    pub name: String,
    pub kind: String,
    pub owner_team: String,
    pub owner_email: String,
    pub service: String,
    pub environment: String,
    pub identifiers: Vec<IdentifierBody>,
    #[serde(default)]
    pub spiffe_id: Option<String>,
    #[serde(default)]
    pub profile: Option<String>,
}

impl AssetBody {
    pub fn to_spec(&self) -> AssetSpec {
        AssetSpec {
            name: self.name.clone(),
            kind: self.kind.clone(),
            owner_team: self.owner_team.clone(),
            owner_email: self.owner_email.clone(),
            service: self.service.clone(),
            environment: self.environment.clone(),
            identifiers: self.identifiers.iter().map(|i| (i.kind.clone(), i.value.clone())).collect(),
            spiffe_id: self.spiffe_id.clone(),
            profile: self.profile.clone(),
        }
    }
}

pub fn asset_json(a: &Asset) -> Value {
    json!({
        "name": a.name, "kind": a.kind.as_str(), "owner_team": a.owner_team, "owner_email": a.owner_email,
        "service": a.service, "environment": a.environment,
        "identifiers": a.identifiers.iter().map(|i| json!({"type": i.kind.as_str(), "value": i.value})).collect::<Vec<_>>(),
        "spiffe_id": a.spiffe_id, "profile": a.profile, "status": a.status.as_str(), "compromised": a.compromised,
        "created_at": rfc3339(a.created_at), "updated_at": rfc3339(a.updated_at),
        "decommissioned_at": a.decommissioned_at.map(rfc3339),
    })
}

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    owner_team: Option<String>,
    service: Option<String>,
    environment: Option<String>,
    kind: Option<String>,
}

async fn list(
    state: web::Data<AdminState>,
    principal: Principal,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, AdminProblem> {
    principal.require(&state, Permission::ReadAssets, Some(Track::Machine), "list assets").await?;
    let q = q.into_inner();
    let filter = AssetQuery {
        status: q
            .status
            .as_deref()
            .map(|s| AssetStatus::parse(s).ok_or_else(|| AdminProblem::bad_request(format!("status {s:?}"))))
            .transpose()?,
        kind: q
            .kind
            .as_deref()
            .map(|s| AssetKind::parse(s).ok_or_else(|| AdminProblem::bad_request(format!("kind {s:?}"))))
            .transpose()?,
        owner_team: q.owner_team,
        service: q.service,
        environment: q.environment,
    };
    let ca = state.ca.clone();
    let assets = blocking(move || ca.assets(&filter)).await?;
    Ok(HttpResponse::Ok().json(json!({ "assets": assets.iter().map(asset_json).collect::<Vec<_>>() })))
}

async fn register(
    state: web::Data<AdminState>,
    principal: Principal,
    body: web::Json<AssetBody>,
) -> Result<HttpResponse, AdminProblem> {
    principal.require(&state, Permission::ManageAssets, Some(Track::Machine), "register assets").await?;
    let (ca, spec, actor) = (state.ca.clone(), body.into_inner().to_spec(), principal.actor());
    let asset = blocking(move || ca.register_asset(&spec, &actor)).await?;
    Ok(HttpResponse::build(StatusCode::CREATED).json(asset_json(&asset)))
}

async fn show(
    state: web::Data<AdminState>,
    principal: Principal,
    name: web::Path<String>,
) -> Result<HttpResponse, AdminProblem> {
    principal.require(&state, Permission::ReadAssets, Some(Track::Machine), "read assets").await?;
    let (ca, name) = (state.ca.clone(), name.into_inner());
    let (asset, certs) = blocking(move || {
        let asset = ca.asset(&name)?;
        let filter = CertificateFilter { asset: Some(asset.id.clone()), ..CertificateFilter::default() };
        let certs = ca.search_certificates(Track::Machine, &filter, None, 1000)?;
        Ok((asset, certs))
    })
    .await?;
    let mut body = asset_json(&asset);
    body["certificates"] = json!(certs.iter().map(certificate_json).collect::<Vec<_>>());
    Ok(HttpResponse::Ok().json(body))
}

async fn update(
    state: web::Data<AdminState>,
    principal: Principal,
    name: web::Path<String>,
    body: web::Json<AssetBody>,
) -> Result<HttpResponse, AdminProblem> {
    principal.require(&state, Permission::ManageAssets, Some(Track::Machine), "update assets").await?;
    let (ca, name, spec, actor) = (state.ca.clone(), name.into_inner(), body.into_inner().to_spec(), principal.actor());
    let asset = blocking(move || ca.update_asset(&name, &spec, &actor)).await?;
    Ok(HttpResponse::Ok().json(asset_json(&asset)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DecommissionBody {
    #[serde(default)]
    compromised: bool,
}

async fn decommission(
    state: web::Data<AdminState>,
    principal: Principal,
    name: web::Path<String>,
    raw: web::Bytes,
) -> Result<HttpResponse, AdminProblem> {
    principal.require(&state, Permission::ManageAssets, Some(Track::Machine), "decommission assets").await?;
    let body: DecommissionBody = crate::problem::optional_json(&raw)?;
    let compromised = body.compromised;
    let (ca, name, actor) = (state.ca.clone(), name.into_inner(), principal.actor());
    let report = blocking(move || ca.decommission_asset(&name, compromised, &actor)).await?;
    Ok(HttpResponse::Ok().json(json!({
        "asset": report.asset,
        "revoked_certificates": report.revoked_serials,
        "deactivated_accounts": report.deactivated_accounts,
        "revoked_eab_keys": report.revoked_eab_keys,
    })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CredentialsBody {
    ttl: Option<String>,
    #[serde(default)]
    single_use: bool,
}

async fn credentials(
    state: web::Data<AdminState>,
    principal: Principal,
    name: web::Path<String>,
    raw: web::Bytes,
) -> Result<HttpResponse, AdminProblem> {
    principal.require(&state, Permission::ManageAssets, Some(Track::Machine), "issue EAB credentials").await?;
    let body: CredentialsBody = crate::problem::optional_json(&raw)?;
    let ttl = crate::api::parse_within(body.ttl.as_deref().unwrap_or("7d"))?;
    let (ca, name, actor) = (state.ca.clone(), name.into_inner(), principal.actor());
    let creds = blocking(move || ca.create_asset_eab(&name, ttl, body.single_use, &actor)).await?;
    Ok(HttpResponse::build(StatusCode::CREATED).json(json!({
        "kid": creds.kid, "hmac_key": creds.hmac_key_b64, "expires_at": rfc3339(creds.expires_at), "single_use": creds.single_use,
        "directory": format!("{}/acme/machine/directory", state.ca.public_url()),
    })))
}

#[derive(Deserialize, Default)]
pub struct SyncQuery {
    #[serde(default)]
    apply: bool,
    #[serde(default)]
    force: bool,
    max_share: Option<f64>,
}

/// The decommission share above which a sync refuses without `force`.
pub const DEFAULT_MAX_DECOMMISSION_SHARE: f64 = 0.10;

/// POST the whole inventory (JSON, or CSV with Content-Type text/csv). Without `apply=true`
/// it only returns the plan.
async fn sync(
    state: web::Data<AdminState>,
    principal: Principal,
    req: actix_web::HttpRequest,
    query: web::Query<SyncQuery>,
    raw: web::Bytes,
) -> Result<HttpResponse, AdminProblem> {
    principal.require(&state, Permission::ManageAssets, Some(Track::Machine), "sync the inventory").await?;
    let csv =
        req.headers().get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/csv"));
    let format = if csv { crate::sync::Format::Csv } else { crate::sync::Format::Json };
    let specs = crate::sync::parse_inventory(&raw, format).map_err(AdminProblem::bad_request)?;
    let q = query.into_inner();
    let max_share = q.max_share.unwrap_or(DEFAULT_MAX_DECOMMISSION_SHARE);
    let (ca, actor) = (state.ca.clone(), principal.actor());
    let (plan, report) = blocking(move || {
        let plan = ca.plan_inventory_sync(&specs)?;
        let report = if q.apply { Some(ca.apply_inventory_sync(&plan, max_share, q.force, &actor)?) } else { None };
        Ok((plan, report))
    })
    .await?;
    let mut body = crate::sync::plan_json(&plan);
    body["applied"] = json!(report.is_some());
    if let Some(report) = report {
        body["report"] = json!({
            "created": report.created,
            "updated": report.updated,
            "decommissioned": report.decommissioned.iter().map(|d| json!({"asset": d.asset, "revoked_certificates": d.revoked_serials})).collect::<Vec<_>>(),
        });
    }
    Ok(HttpResponse::Ok().json(body))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RedeployBody {
    grace: Option<String>,
}

/// Supersedes the asset's current certificates after a grace period (default 1h).
async fn redeploy(
    state: web::Data<AdminState>,
    principal: Principal,
    name: web::Path<String>,
    raw: web::Bytes,
) -> Result<HttpResponse, AdminProblem> {
    principal.require(&state, Permission::ManageAssets, Some(Track::Machine), "redeploy assets").await?;
    let body: RedeployBody = crate::problem::optional_json(&raw)?;
    let grace = crate::api::parse_within(body.grace.as_deref().unwrap_or("1h"))?;
    let (ca, name, actor) = (state.ca.clone(), name.into_inner(), principal.actor());
    let superseded = blocking(move || ca.redeploy_asset(&name, grace, &actor)).await?;
    let due = state.ca.clock.unix() + grace;
    Ok(HttpResponse::Ok().json(json!({ "superseded": superseded, "revoked_at": rfc3339(due) })))
}

/// Revokes EAB credentials before they expire; accounts already bound keep their binding.
async fn revoke_credentials(
    state: web::Data<AdminState>,
    principal: Principal,
    kid: web::Path<String>,
) -> Result<HttpResponse, AdminProblem> {
    principal.require(&state, Permission::ManageAssets, Some(Track::Machine), "revoke EAB credentials").await?;
    let (ca, kid, actor) = (state.ca.clone(), kid.into_inner(), principal.actor());
    let kid_for_call = kid.clone();
    blocking(move || ca.revoke_eab_key(Track::Machine, &kid_for_call, &actor)).await?;
    Ok(HttpResponse::Ok().json(json!({ "kid": kid, "revoked": true })))
}
