//! The machine track's inventory pages: the asset list, one asset with its certificates, the
//! form that makes EAB credentials for it, and the Decommission button (behind a confirm dialog
//! and the CSRF check).

use std::fmt::Write;

use actix_web::{web, HttpRequest, HttpResponse};
use dualca_ca::clock::rfc3339;
use dualca_ca::model::{Asset, AssetStatus, EabKeyInfo};
use dualca_ca::{AssetQuery, CertificateFilter, Track};
use serde::Deserialize;

use super::html::{self, esc, link, url_part};
use super::session::{blocking, state, CsrfForm, PageError, Session};
use crate::auth::Permission;

#[derive(Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    status: String,
}

fn identifiers(asset: &Asset) -> String {
    asset.identifiers.iter().map(|i| esc(&i.to_string())).collect::<Vec<_>>().join("<br>")
}

/// GET /admin/machine/assets
pub async fn list(req: HttpRequest, session: Session) -> Result<HttpResponse, PageError> {
    let state = state(&req)?;
    session.require(&state, Permission::ReadAssets, Track::Machine, "list assets").await?;
    let q = web::Query::<ListQuery>::from_query(req.query_string()).map(|q| q.into_inner()).unwrap_or_default();
    let status = match q.status.as_str() {
        "" => None,
        s => Some(AssetStatus::parse(s).ok_or_else(|| PageError::bad_request(format!("Unknown status {s:?}.")))?),
    };
    let filter = AssetQuery { status, ..AssetQuery::default() };
    let ca = state.ca.clone();
    let assets = blocking(move || ca.assets(&filter)).await?;
    let option = |value: &str, label: &str| {
        let selected = if q.status == value { " selected" } else { "" };
        format!("<option value=\"{}\"{selected}>{}</option>", esc(value), esc(label))
    };
    let mut body = format!(
        "<form method=\"get\" action=\"/admin/machine/assets\" class=\"filters\"><label>Status \
         <select name=\"status\">{}{}{}</select></label> <button type=\"submit\">Show</button></form>",
        option("", "all"),
        option("active", "active"),
        option("decommissioned", "decommissioned")
    );
    if assets.is_empty() {
        body.push_str("<p id=\"no-assets\">No assets.</p>");
    } else {
        body.push_str(
            "<table id=\"assets\"><thead><tr><th>Name</th><th>Kind</th><th>Status</th><th>Owner team</th>\
             <th>Service</th><th>Environment</th><th>Identifiers</th></tr></thead><tbody>",
        );
        for a in &assets {
            let _ = write!(
                body,
                "<tr><td class=\"name\">{}</td><td>{}</td><td class=\"status\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                link(&html::asset_href(&a.name), &a.name),
                esc(a.kind.as_str()),
                esc(a.status.as_str()),
                esc(&a.owner_team),
                esc(&a.service),
                esc(&a.environment),
                identifiers(a)
            );
        }
        body.push_str("</tbody></table>");
    }
    Ok(html::ok("Assets", &session, &body))
}

#[derive(Deserialize, Default)]
struct NoticeQuery {
    decommissioned: Option<usize>,
    eab_revoked: Option<String>,
}

/// GET /admin/machine/assets/{name}
pub async fn show(req: HttpRequest, session: Session, name: web::Path<String>) -> Result<HttpResponse, PageError> {
    let state = state(&req)?;
    session.require(&state, Permission::ReadAssets, Track::Machine, "read assets").await?;
    let notice = web::Query::<NoticeQuery>::from_query(req.query_string()).map(|q| q.into_inner()).unwrap_or_default();
    let (ca, name) = (state.ca.clone(), name.into_inner());
    let now = state.ca.clock.unix();
    let (asset, certs, keys) = blocking(move || {
        let asset = ca.asset(&name)?;
        let filter = CertificateFilter { asset: Some(asset.id.clone()), ..CertificateFilter::default() };
        let certs = ca.search_certificates(Track::Machine, &filter, None, 1000)?;
        let keys = ca.asset_eab_keys(&asset.name)?;
        Ok((asset, certs, keys))
    })
    .await?;
    let mut body = String::new();
    if let Some(kid) = notice.eab_revoked.filter(|kid| keys.iter().any(|k| &k.kid == kid && k.revoked_at.is_some())) {
        let _ = write!(body, "<p class=\"notice\" id=\"notice\">EAB key {} is revoked.</p>", esc(&kid));
    }
    if let (Some(revoked), AssetStatus::Decommissioned) = (notice.decommissioned, asset.status) {
        let _ = write!(
            body,
            "<p class=\"notice\" id=\"notice\">Decommissioned: {revoked} certificate(s) revoked, its accounts and EAB keys deactivated.</p>"
        );
    }
    let optional = |v: &Option<String>| esc(v.as_deref().unwrap_or("—"));
    body.push_str(&html::facts(&[
        ("Name", format!("<span id=\"asset-name\">{}</span>", esc(&asset.name))),
        ("Kind", esc(asset.kind.as_str())),
        ("Status", format!("<span id=\"status\">{}</span>", esc(asset.status.as_str()))),
        ("Compromised", if asset.compromised { "yes".into() } else { "no".into() }),
        ("Owner team", esc(&asset.owner_team)),
        ("Owner email", esc(&asset.owner_email)),
        ("Service", esc(&asset.service)),
        ("Environment", esc(&asset.environment)),
        ("Identifiers", identifiers(&asset)),
        ("SPIFFE ID", optional(&asset.spiffe_id)),
        ("Profile", optional(&asset.profile)),
        ("Registered", esc(&rfc3339(asset.created_at))),
        ("Updated", esc(&rfc3339(asset.updated_at))),
        ("Decommissioned", esc(&asset.decommissioned_at.map(rfc3339).unwrap_or_else(|| "—".into()))),
    ]));
    if asset.status == AssetStatus::Active && session.may(Permission::ManageAssets, Track::Machine) {
        let _ = write!(
            body,
            "<h2>EAB credentials</h2><p>For the asset's ACME clients: a key id and an HMAC key, shown \
             once, on the page this form opens.</p><form method=\"post\" action=\"{}\">{}\
             <label>Valid for <select name=\"ttl\" id=\"eab-ttl\">{}</select></label> \
             <label><input type=\"checkbox\" name=\"single_use\" id=\"eab-single-use\"> single use</label> \
             <button type=\"submit\" id=\"make-eab\">Make EAB credentials</button></form>",
            esc(&format!("{}/credentials", html::asset_href(&asset.name))),
            html::csrf_field(&session.csrf),
            EAB_VALIDITY
                .iter()
                .map(|(value, label)| {
                    let selected = if *value == DEFAULT_EAB_VALIDITY { " selected" } else { "" };
                    format!("<option value=\"{value}\"{selected}>{label}</option>")
                })
                .collect::<String>()
        );
        let _ = write!(
            body,
            "<h2>Decommission</h2><form method=\"post\" action=\"{}\" data-confirm=\"{}\">{}\
             <button type=\"submit\" class=\"danger\" id=\"decommission\">Decommission</button></form>",
            esc(&format!("{}/decommission", html::asset_href(&asset.name))),
            esc(&format!(
                "Decommission {}? Its {} live certificate(s) are revoked at once, and its accounts and EAB keys stop working.",
                asset.name,
                certs.iter().filter(|c| c.status == dualca_ca::model::CertificateStatus::Valid).count()
            )),
            html::csrf_field(&session.csrf)
        );
    }
    body.push_str(&eab_table(&session, &asset.name, &keys, now));
    body.push_str("<h2>Certificates</h2>");
    if certs.is_empty() {
        body.push_str("<p id=\"no-certificates\">None.</p>");
    } else {
        body.push_str(
            "<table id=\"certificates\"><thead><tr><th>Serial</th><th>Status</th><th>Identifiers</th>\
             <th>Not after</th></tr></thead><tbody>",
        );
        let may_open = session.may(Permission::ReadCertificates, Track::Machine);
        for c in &certs {
            let serial = if may_open {
                link(&html::certificate_href(Track::Machine, &c.serial), &c.serial)
            } else {
                esc(&c.serial)
            };
            let ids: Vec<String> = c.identifiers.iter().map(|i| esc(&i.to_string())).collect();
            let _ = write!(
                body,
                "<tr><td class=\"serial\">{serial}</td><td class=\"status\">{}</td><td>{}</td><td>{}</td></tr>",
                esc(c.status.as_str()),
                ids.join("<br>"),
                esc(&rfc3339(c.not_after))
            );
        }
        body.push_str("</tbody></table>");
    }
    Ok(html::ok(&format!("Asset {}", asset.name), &session, &body))
}

/// POST /admin/machine/assets/{name}/decommission
pub async fn decommission(
    req: HttpRequest,
    session: Session,
    name: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, PageError> {
    let state = state(&req)?;
    session
        .accept_form::<CsrfForm>(&state, &body, Permission::ManageAssets, Track::Machine, "decommission assets")
        .await?;
    let (ca, name, actor) = (state.ca.clone(), name.into_inner(), session.actor());
    let asset_name = name.clone();
    let report = blocking(move || ca.decommission_asset(&asset_name, false, &actor)).await?;
    Ok(html::see_other(&format!("{}?decommissioned={}", html::asset_href(&name), report.revoked_serials.len())))
}

/// The validities the credentials form offers, as (form value, label); the API takes any.
const EAB_VALIDITY: &[(&str, &str)] = &[("1d", "1 day"), ("7d", "7 days"), ("30d", "30 days")];
const DEFAULT_EAB_VALIDITY: &str = "7d";

#[derive(Deserialize)]
struct CredentialsForm {
    ttl: Option<String>,
    single_use: Option<String>,
}

/// POST /admin/machine/assets/{name}/credentials: new EAB credentials for the asset, audited.
/// The key is in this response only (sent `no-store`, like every page), never in a URL or a log.
pub async fn credentials(
    req: HttpRequest,
    session: Session,
    name: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, PageError> {
    let state = state(&req)?;
    let f: CredentialsForm =
        session.accept_form(&state, &body, Permission::ManageAssets, Track::Machine, "issue EAB credentials").await?;
    let ttl = f.ttl.unwrap_or_else(|| DEFAULT_EAB_VALIDITY.into());
    if !EAB_VALIDITY.iter().any(|(value, _)| *value == ttl) {
        return Err(PageError::bad_request(format!("Unknown validity {ttl:?}: 1d, 7d or 30d.")));
    }
    let ttl_seconds = crate::api::parse_within(&ttl).map_err(|e| PageError::bad_request(e.detail))?;
    let single_use = f.single_use.is_some();
    let (ca, name, actor) = (state.ca.clone(), name.into_inner(), session.actor());
    let asset = name.clone();
    let creds = blocking(move || ca.create_asset_eab(&name, ttl_seconds, single_use, &actor)).await?;
    let directory = format!("{}/acme/machine/directory", state.ca.public_url());
    let mut body = String::from(
        "<p class=\"notice\" id=\"notice\">New EAB credentials. The HMAC key is shown only now: copy it to the \
         asset's ACME client before leaving this page.</p>",
    );
    body.push_str(&html::facts(&[
        ("Asset", link(&html::asset_href(&asset), &asset)),
        ("Key id (kid)", format!("<code id=\"eab-kid\">{}</code>", esc(&creds.kid))),
        ("HMAC key", format!("<code id=\"eab-hmac\">{}</code>", esc(&creds.hmac_key_b64))),
        ("Expires", esc(&rfc3339(creds.expires_at))),
        ("Single use", if creds.single_use { "yes".into() } else { "no".into() }),
        ("Directory", format!("<code>{}</code>", esc(&directory))),
    ]));
    // `=` joins each key to its flag: a base64url key begins with `-` one time in 64.
    let _ = write!(
        body,
        "<h2>With certbot or lego</h2><pre id=\"eab-commands\">certbot certonly --server {dir} --eab-kid {kid} --eab-hmac-key={key} -d NAME\n\
         lego --server {dir} --eab --kid {kid} --hmac={key} --domains NAME run</pre>",
        dir = esc(&directory),
        kid = esc(&creds.kid),
        key = esc(&creds.hmac_key_b64),
    );
    Ok(html::ok("EAB credentials", &session, &body))
}

/// The asset's EAB keys (never the keys themselves), each with a Revoke button while it can
/// still bind an account, for roles that manage assets.
fn eab_table(session: &Session, asset: &str, keys: &[EabKeyInfo], now: i64) -> String {
    if keys.is_empty() {
        return "<h2>EAB keys</h2><p id=\"no-eab-keys\">None.</p>".into();
    }
    let may_revoke = session.may(Permission::ManageAssets, Track::Machine);
    let mut out = String::from(
        "<h2>EAB keys</h2><table id=\"eab-keys\"><thead><tr><th>Key id</th><th>Made (UTC)</th><th>Expires</th>\
         <th>Single use</th><th>Used</th><th>State</th><th></th></tr></thead><tbody>",
    );
    for k in keys {
        let when = |t: Option<i64>| esc(&t.map(rfc3339).unwrap_or_else(|| "—".into()));
        let spent = k.spent(now);
        let action = match spent {
            None if may_revoke => format!(
                "<form method=\"post\" action=\"{}\" data-confirm=\"{}\">{}\
                 <button type=\"submit\" class=\"danger revoke-eab\">Revoke</button></form>",
                esc(&format!("{}/eab/{}/revoke", html::asset_href(asset), url_part(&k.kid))),
                esc(&format!("Revoke EAB key {}? No new account can be bound with it.", k.kid)),
                html::csrf_field(&session.csrf)
            ),
            _ => String::new(),
        };
        let _ = write!(
            out,
            "<tr id=\"eab-{}\"><td class=\"kid\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"state\">{}</td><td>{action}</td></tr>",
            esc(&k.kid),
            esc(&k.kid),
            esc(&rfc3339(k.created_at)),
            esc(&rfc3339(k.expires_at)),
            if k.single_use { "yes" } else { "no" },
            when(k.used_at),
            spent.unwrap_or("usable"),
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// POST /admin/machine/assets/{name}/eab/{kid}/revoke: a key of this asset only.
pub async fn revoke_eab(
    req: HttpRequest,
    session: Session,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, PageError> {
    let state = state(&req)?;
    let (name, kid) = path.into_inner();
    session.accept_form::<CsrfForm>(&state, &body, Permission::ManageAssets, Track::Machine, "revoke EAB keys").await?;
    let (ca, actor, asset) = (state.ca.clone(), session.actor(), name.clone());
    let revoked = kid.clone();
    blocking(move || {
        if !ca.asset_eab_keys(&asset)?.iter().any(|k| k.kid == revoked) {
            return Err(dualca_ca::Error::not_found(format!("asset {asset:?} has no EAB key {revoked:?}")));
        }
        ca.revoke_eab_key(Track::Machine, &revoked, &actor)
    })
    .await?;
    Ok(html::see_other(&format!("{}{}", html::asset_href(&name), html::query_string(&[("eab_revoked", &kid)]))))
}
