//! Database rows, private to storage, and their conversions to and from domain types.

use diesel::prelude::*;

use super::schema::*;
use crate::model::*;
use crate::{Error, ErrorKind, Result, Track};

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = accounts)]
#[diesel(treat_none_as_default_value = false)]
pub struct AccountRow {
    pub id: String,
    pub track: String,
    pub key_thumbprint: String,
    pub jwk: String,
    pub status: String,
    pub contact: String,
    pub tos_agreed: bool,
    pub eab_kid: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub asset_id: Option<String>,
    pub person_id: Option<String>,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = orders)]
#[diesel(treat_none_as_default_value = false)]
pub struct OrderRow {
    pub id: String,
    pub track: String,
    pub account_id: String,
    pub status: String,
    pub identifiers: String,
    pub profile: String,
    pub expires: i64,
    pub error: Option<String>,
    pub certificate_serial: Option<String>,
    pub replaces: Option<String>,
    pub created_at: i64,
    pub created_micros: i64,
}

#[derive(Queryable, Selectable, Insertable, serde::Serialize)]
#[diesel(table_name = authorizations)]
#[diesel(treat_none_as_default_value = false)]
pub struct AuthorizationRow {
    pub id: String,
    pub track: String,
    pub account_id: String,
    pub order_id: String,
    pub identifier_type: String,
    pub identifier_value: String,
    pub wildcard: bool,
    pub status: String,
    pub expires: i64,
    pub position: i64,
    pub created_at: i64,
}

#[derive(Clone, Queryable, Selectable, Insertable, serde::Serialize)]
#[diesel(table_name = challenges)]
#[diesel(treat_none_as_default_value = false)]
pub struct ChallengeRow {
    pub id: String,
    pub authorization_id: String,
    pub kind: String,
    pub token: String,
    pub status: String,
    pub validated: Option<i64>,
    pub error: Option<String>,
    pub position: i64,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = certificates)]
#[diesel(treat_none_as_default_value = false)]
pub struct CertificateRow {
    pub serial: String,
    pub track: String,
    pub account_id: Option<String>,
    pub order_id: Option<String>,
    pub asset_id: Option<String>,
    pub person_id: Option<String>,
    pub profile: String,
    pub identifiers: String,
    pub spki_sha256: String,
    pub not_before: i64,
    pub not_after: i64,
    pub der: Vec<u8>,
    pub status: String,
    pub revocation_reason: Option<i64>,
    pub revoked_at: Option<i64>,
    pub replaced_by: Option<String>,
    pub created_at: i64,
}

#[derive(Queryable, Selectable, Insertable, Clone)]
#[diesel(table_name = audit_events)]
#[diesel(treat_none_as_default_value = false)]
pub struct AuditRow {
    pub track: String,
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

fn corrupt(what: &str, value: &str) -> Error {
    Error::internal(format!("stored {what} {value:?} is not valid"))
}

pub fn parse_track(s: &str) -> Result<Track> {
    s.parse().map_err(|_| corrupt("track", s))
}

/// Identifiers are stored as a JSON array of [type, value] pairs.
pub fn identifiers_to_text(ids: &[Identifier]) -> String {
    let pairs: Vec<(&str, &str)> = ids.iter().map(|i| (i.kind.as_str(), i.value.as_str())).collect();
    serde_json::to_string(&pairs).unwrap_or_default()
}

pub fn identifiers_from_text(text: &str) -> Result<Vec<Identifier>> {
    let pairs: Vec<(String, String)> = serde_json::from_str(text).map_err(|_| corrupt("identifiers", text))?;
    pairs
        .into_iter()
        .map(|(kind, value)| {
            let kind = IdentifierKind::parse(&kind).ok_or_else(|| corrupt("identifier type", &kind))?;
            Ok(Identifier::new(kind, value))
        })
        .collect()
}

/// Problems are stored as {"kind": "...", "detail": "..."}.
pub fn problem_to_text(p: &StoredProblem) -> String {
    serde_json::json!({ "kind": p.kind.name(), "detail": p.detail }).to_string()
}

pub fn problem_from_text(text: &str) -> Result<StoredProblem> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|_| corrupt("problem", text))?;
    let kind = v["kind"].as_str().and_then(ErrorKind::from_name).unwrap_or(ErrorKind::Internal);
    Ok(StoredProblem { kind, detail: v["detail"].as_str().unwrap_or_default().to_string() })
}

impl TryFrom<AccountRow> for Account {
    type Error = Error;
    fn try_from(r: AccountRow) -> Result<Account> {
        Ok(Account {
            track: parse_track(&r.track)?,
            status: AccountStatus::parse(&r.status).ok_or_else(|| corrupt("account status", &r.status))?,
            contact: serde_json::from_str(&r.contact).map_err(|_| corrupt("contact", &r.contact))?,
            id: r.id,
            key_thumbprint: r.key_thumbprint,
            jwk: r.jwk,
            tos_agreed: r.tos_agreed,
            eab_kid: r.eab_kid,
            asset_id: r.asset_id,
            person_id: r.person_id,
            created_at: r.created_at,
        })
    }
}

impl ChallengeRow {
    pub fn into_domain(self) -> Result<Challenge> {
        Ok(Challenge {
            kind: ChallengeKind::parse(&self.kind).ok_or_else(|| corrupt("challenge type", &self.kind))?,
            status: ChallengeStatus::parse(&self.status).ok_or_else(|| corrupt("challenge status", &self.status))?,
            error: self.error.as_deref().map(problem_from_text).transpose()?,
            id: self.id,
            authorization_id: self.authorization_id,
            token: self.token,
            validated: self.validated,
        })
    }
}

impl AuthorizationRow {
    pub fn into_domain(self, challenges: Vec<Challenge>) -> Result<Authorization> {
        let kind = IdentifierKind::parse(&self.identifier_type)
            .ok_or_else(|| corrupt("identifier type", &self.identifier_type))?;
        Ok(Authorization {
            track: parse_track(&self.track)?,
            status: AuthzStatus::parse(&self.status).ok_or_else(|| corrupt("authorization status", &self.status))?,
            identifier: Identifier::new(kind, self.identifier_value),
            id: self.id,
            account_id: self.account_id,
            order_id: self.order_id,
            wildcard: self.wildcard,
            expires: self.expires,
            challenges,
        })
    }
}

impl OrderRow {
    pub fn into_domain(self, authorization_ids: Vec<String>) -> Result<Order> {
        Ok(Order {
            track: parse_track(&self.track)?,
            status: OrderStatus::parse(&self.status).ok_or_else(|| corrupt("order status", &self.status))?,
            identifiers: identifiers_from_text(&self.identifiers)?,
            error: self.error.as_deref().map(problem_from_text).transpose()?,
            id: self.id,
            account_id: self.account_id,
            profile: self.profile,
            expires: self.expires,
            certificate_serial: self.certificate_serial,
            replaces: self.replaces,
            authorization_ids,
            created_at: self.created_at,
        })
    }
}

impl TryFrom<CertificateRow> for CertificateRecord {
    type Error = Error;
    fn try_from(r: CertificateRow) -> Result<CertificateRecord> {
        Ok(CertificateRecord {
            track: parse_track(&r.track)?,
            identifiers: identifiers_from_text(&r.identifiers)?,
            status: CertificateStatus::parse(&r.status).ok_or_else(|| corrupt("certificate status", &r.status))?,
            revocation_reason: r.revocation_reason.map(|c| c as u8),
            serial: r.serial,
            account_id: r.account_id,
            order_id: r.order_id,
            asset_id: r.asset_id,
            person_id: r.person_id,
            profile: r.profile,
            spki_sha256: r.spki_sha256,
            not_before: r.not_before,
            not_after: r.not_after,
            der: r.der,
            revoked_at: r.revoked_at,
            replaced_by: r.replaced_by,
        })
    }
}

/// Who a newly issued certificate belongs to, as its row records it.
#[derive(Default)]
pub struct Holder {
    pub account_id: Option<String>,
    pub order_id: Option<String>,
    pub asset_id: Option<String>,
    pub person_id: Option<String>,
}

impl CertificateRow {
    /// The row of a certificate just issued: valid, not revoked, not replaced.
    pub fn issued(issued: &crate::issuance::Issued, holder: Holder, now: i64) -> CertificateRow {
        CertificateRow {
            serial: issued.serial_hex.clone(),
            track: issued.track.as_str().into(),
            account_id: holder.account_id,
            order_id: holder.order_id,
            asset_id: holder.asset_id,
            person_id: holder.person_id,
            profile: issued.profile.clone(),
            identifiers: identifiers_to_text(&issued.identifiers),
            spki_sha256: issued.spki_sha256.clone(),
            not_before: issued.not_before,
            not_after: issued.not_after,
            der: issued.der.clone(),
            status: CertificateStatus::Valid.as_str().into(),
            revocation_reason: None,
            revoked_at: None,
            replaced_by: None,
            created_at: now,
        }
    }
}
