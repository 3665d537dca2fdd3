//! RFC 8555 wire objects. Domain types convert into these here and nowhere else.

use dualca_ca::clock::rfc3339;
use dualca_ca::model::{Account, Authorization, Challenge, ChallengeKind, Identifier, Order};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::problem::{kind_type_and_status, Problem};
use crate::AcmeState;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewAccountRequest {
    #[serde(default)]
    pub contact: Option<Vec<String>>,
    #[serde(default)]
    pub terms_of_service_agreed: Option<bool>,
    #[serde(default)]
    pub only_return_existing: Option<bool>,
    #[serde(default)]
    pub external_account_binding: Option<Value>,
}

#[derive(Deserialize)]
pub struct AccountUpdate {
    #[serde(default)]
    pub contact: Option<Vec<String>>,
    #[serde(default)]
    pub status: Option<String>,
}

#[derive(Deserialize)]
pub struct IdentifierWire {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewOrderRequest {
    pub identifiers: Vec<IdentifierWire>,
    #[serde(default)]
    pub not_before: Option<String>,
    #[serde(default)]
    pub not_after: Option<String>,
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub replaces: Option<String>,
}

#[derive(Deserialize)]
pub struct FinalizeRequest {
    pub csr: String,
}

#[derive(Deserialize)]
pub struct StatusUpdate {
    pub status: Option<String>,
}

#[derive(Deserialize)]
pub struct RevokeRequest {
    pub certificate: String,
    #[serde(default)]
    pub reason: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyChangeInner {
    pub account: String,
    pub old_key: Value,
}

pub fn identifier(id: &Identifier) -> Value {
    json!({ "type": id.kind.as_str(), "value": id.value })
}

fn stored_problem(p: &dualca_ca::model::StoredProblem) -> Value {
    let (kind, status) = kind_type_and_status(p.kind);
    Problem::new(kind, status, p.detail.clone()).to_json()
}

pub fn account(state: &AcmeState, a: &Account) -> Value {
    json!({
        "status": a.status.as_str(),
        "contact": a.contact,
        "termsOfServiceAgreed": a.tos_agreed,
        "orders": state.url(&format!("acct/{}/orders", a.id)),
        "createdAt": rfc3339(a.created_at),
    })
}

pub fn order(state: &AcmeState, o: &Order) -> Value {
    let mut v = json!({
        "status": o.status.as_str(),
        "expires": rfc3339(o.expires),
        "identifiers": o.identifiers.iter().map(identifier).collect::<Vec<_>>(),
        "authorizations": o.authorization_ids.iter().map(|id| state.url(&format!("authz/{id}"))).collect::<Vec<_>>(),
        "finalize": state.url(&format!("finalize/{}", o.id)),
        "profile": o.profile,
    });
    if let Some(serial) = &o.certificate_serial {
        v["certificate"] = json!(state.url(&format!("cert/{serial}")));
    }
    if let Some(err) = &o.error {
        v["error"] = stored_problem(err);
    }
    if let Some(serial) = &o.replaces {
        let aki = &state.ca.hierarchy.issuer(state.track).subject_key_identifier;
        v["replaces"] = json!(dualca_ca::ari::cert_id(aki, serial));
    }
    v
}

pub fn challenge(state: &AcmeState, c: &Challenge) -> Value {
    let mut v = json!({
        "type": c.kind.as_str(),
        "url": state.url(&format!("chall/{}", c.id)),
        "status": c.status.as_str(),
        "token": c.token,
    });
    if c.kind == ChallengeKind::EmailReply00 {
        // RFC 8823 §3: the address the challenge mail comes from, where the reply goes.
        v["from"] = json!(state.ca.email_reply_address());
    }
    if let Some(at) = c.validated {
        v["validated"] = json!(rfc3339(at));
    }
    if let Some(err) = &c.error {
        v["error"] = stored_problem(err);
    }
    v
}

pub fn authorization(state: &AcmeState, a: &Authorization) -> Value {
    let mut v = json!({
        "identifier": identifier(&a.identifier),
        "status": a.status.as_str(),
        "expires": rfc3339(a.expires),
        "challenges": a.challenges.iter().map(|c| challenge(state, c)).collect::<Vec<_>>(),
    });
    if a.wildcard {
        v["wildcard"] = json!(true);
    }
    v
}
