//! The machine track's inventory: registering, updating and decommissioning assets, and the
//! EAB credentials (RFC 8555 §7.3.4) that bind ACME accounts to them. Decommissioning revokes,
//! deactivates and audits in one transaction: machines fail closed.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use serde_json::json;

use super::Ca;
use crate::audit::{self, AuditEvent};
use crate::model::*;
use crate::storage::assets::{self as store, AssetFilter, AssetRow, EabKeyRow};
use crate::storage::{accounts, certificates, DbConnection};
use crate::{ids, Error, ErrorKind, Result, Track};

/// What decommissioning did.
#[derive(Debug, Clone)]
pub struct Decommissioned {
    pub asset: String,
    pub revoked_serials: Vec<String>,
    pub deactivated_accounts: Vec<String>,
    pub revoked_eab_keys: usize,
}

/// What verified EAB credentials bind a new account to.
pub(super) struct EabBinding {
    pub asset_id: Option<String>,
    pub person_id: Option<String>,
}

/// A verified externalAccountBinding, ready to bind the new account.
pub struct EabProof {
    pub kid: String,
    /// The JWS algorithm of the binding: HS256, HS384 or HS512.
    pub alg: String,
    /// `protected || '.' || payload`, as signed.
    pub signing_input: Vec<u8>,
    pub signature: Vec<u8>,
}

fn asset_subject(asset: &Asset) -> String {
    format!("asset:{}", asset.name)
}

/// The row of an active asset as `spec` describes it.
fn active_asset_row(id: String, spec: &AssetSpec, kind: AssetKind, created_at: i64, now: i64) -> AssetRow {
    AssetRow {
        id,
        name: spec.name.clone(),
        kind: kind.as_str().into(),
        owner_team: spec.owner_team.clone(),
        owner_email: spec.owner_email.clone(),
        service: spec.service.clone(),
        environment: spec.environment.clone(),
        spiffe_id: spec.spiffe_id.clone(),
        profile: spec.profile.clone(),
        status: AssetStatus::Active.as_str().into(),
        compromised: false,
        created_at,
        updated_at: now,
        decommissioned_at: None,
    }
}

fn check_spiffe(id: &str) -> Result<()> {
    let rest = id
        .strip_prefix("spiffe://")
        .ok_or_else(|| Error::malformed(format!("SPIFFE ID {id:?} must start with spiffe://")))?;
    let (domain, path) =
        rest.split_once('/').ok_or_else(|| Error::malformed(format!("SPIFFE ID {id:?} has no path")))?;
    let domain_ok = !domain.is_empty()
        && domain.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
    let path_ok = !path.is_empty()
        && path.split('/').all(|s| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        });
    if !domain_ok || !path_ok || id.contains(['?', '#']) {
        return Err(Error::malformed(format!("SPIFFE ID {id:?} is not spiffe://trust-domain/path")));
    }
    Ok(())
}

impl Ca {
    fn validate_spec(&self, spec: &AssetSpec) -> Result<(AssetKind, Vec<Identifier>)> {
        if spec.name.trim().is_empty() || spec.name.len() > 200 {
            return Err(Error::malformed("an asset needs a name of at most 200 characters"));
        }
        let kind = AssetKind::parse(&spec.kind).ok_or_else(|| {
            Error::malformed(format!("asset kind {:?} is not host, container, service, pipeline or device", spec.kind))
        })?;
        for (field, value) in
            [("owner_team", &spec.owner_team), ("service", &spec.service), ("environment", &spec.environment)]
        {
            if value.trim().is_empty() {
                return Err(Error::malformed(format!("an asset needs {field}")));
            }
        }
        super::accounts::check_contacts(&[format!("mailto:{}", spec.owner_email)])
            .map_err(|_| Error::malformed(format!("owner_email {:?} is not an email address", spec.owner_email)))?;
        let policy = self.policy(Track::Machine);
        let mut identifiers = Vec::new();
        for (kind, value) in &spec.identifiers {
            let id = policy.check_identifier(kind, value)?;
            if !identifiers.contains(&id) {
                identifiers.push(id);
            }
        }
        if identifiers.is_empty() {
            return Err(Error::malformed("an asset needs at least one identifier"));
        }
        if let Some(s) = &spec.spiffe_id {
            check_spiffe(s)?;
        }
        if let Some(p) = &spec.profile {
            policy.profile(Some(p))?;
        }
        Ok((kind, identifiers))
    }

    fn ensure_unheld(conn: &mut DbConnection, identifiers: &[Identifier], except: Option<&str>) -> Result<()> {
        for id in identifiers {
            let holders = store::holders(conn, id, except)?;
            if let Some(other) = holders.first() {
                return Err(Error::conflict(format!("{id} already belongs to asset {other:?}")));
            }
        }
        Ok(())
    }

    pub fn register_asset(&self, spec: &AssetSpec, actor: &str) -> Result<Asset> {
        let (kind, identifiers) = self.validate_spec(spec)?;
        let now = self.clock.unix();
        self.storage.write(|conn| {
            store::lock_inventory(conn)?;
            if store::by_name(conn, &spec.name)?.is_some() {
                return Err(Error::conflict(format!("asset {:?} already exists", spec.name)));
            }
            Self::ensure_unheld(conn, &identifiers, None)?;
            let row = active_asset_row(ids::new_id(), spec, kind, now, now);
            store::insert(conn, &row, &identifiers)?;
            audit::record(
                conn,
                Track::Machine,
                now,
                actor,
                "asset.registered",
                format!("asset:{}", spec.name),
                json!({
                    "kind": kind.as_str(), "owner_team": spec.owner_team, "owner_email": spec.owner_email,
                    "service": spec.service, "environment": spec.environment,
                    "identifiers": identifiers.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "spiffe_id": spec.spiffe_id, "profile": spec.profile,
                }),
            )?;
            store::by_id(conn, &row.id)?.ok_or_else(|| Error::internal("asset vanished"))
        })
    }

    /// Replaces an active asset's attributes. A change of owner is its own audit event.
    pub fn update_asset(&self, name: &str, spec: &AssetSpec, actor: &str) -> Result<Asset> {
        let (kind, identifiers) = self.validate_spec(spec)?;
        let now = self.clock.unix();
        self.storage.write(|conn| {
            store::lock_inventory(conn)?;
            store::lock_by_name(conn, name)?;
            let current = store::by_name(conn, name)?.ok_or_else(|| Error::not_found(format!("no asset {name:?}")))?;
            if current.status != AssetStatus::Active {
                return Err(Error::conflict(format!("asset {name:?} is decommissioned")));
            }
            if spec.name != name && store::by_name(conn, &spec.name)?.is_some() {
                return Err(Error::conflict(format!("asset {:?} already exists", spec.name)));
            }
            Self::ensure_unheld(conn, &identifiers, Some(&current.id))?;
            let row = active_asset_row(current.id.clone(), spec, kind, current.created_at, now);
            store::update(conn, &row, &identifiers)?;
            let subject = format!("asset:{}", spec.name);
            if current.owner_team != spec.owner_team || current.owner_email != spec.owner_email {
                // Both the team that hands over and the team that takes over are told.
                let text = format!(
                    "Asset {} ({}, service {}) moved from team {} <{}> to team {} <{}>. Its certificates and renewal alerts now go to the new owner.",
                    spec.name, kind.as_str(), spec.service, current.owner_team, current.owner_email, spec.owner_team, spec.owner_email
                );
                let mut recipients = vec![current.owner_email.clone()];
                if spec.owner_email != current.owner_email {
                    recipients.push(spec.owner_email.clone());
                }
                for to in recipients {
                    let mail = super::OutboundMail::notification(
                        Track::Machine,
                        to,
                        format!("dualca: asset {} changed owner", spec.name),
                        &[&text, &format!("Changed by {actor}.")],
                    );
                    super::outbox::enqueue(conn, &mail, now)?;
                }
                audit::record(conn, Track::Machine,
                        now,
                        actor,
                        "asset.owner-changed",
                        subject.clone(),
                        json!({
                            "from": {"team": current.owner_team, "email": current.owner_email},
                            "to": {"team": spec.owner_team, "email": spec.owner_email},
                        }))?;
            }
            audit::record(conn, Track::Machine,
                    now,
                    actor,
                    "asset.updated",
                    subject,
                    json!({
                        "previous_name": name, "kind": kind.as_str(), "service": spec.service, "environment": spec.environment,
                        "identifiers": identifiers.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        "spiffe_id": spec.spiffe_id, "profile": spec.profile,
                    }))?;
            store::by_id(conn, &current.id)?.ok_or_else(|| Error::internal("asset vanished"))
        })
    }

    pub fn asset(&self, name: &str) -> Result<Asset> {
        self.storage
            .read(|conn| store::by_name(conn, name))?
            .ok_or_else(|| Error::not_found(format!("no asset {name:?}")))
    }

    pub fn asset_by_id(&self, id: &str) -> Result<Asset> {
        self.storage
            .read(|conn| store::by_id(conn, id))?
            .ok_or_else(|| Error::not_found(format!("no asset with id {id:?}")))
    }

    pub fn assets(&self, filter: &AssetFilter) -> Result<Vec<Asset>> {
        self.storage.read(|conn| store::list(conn, filter))
    }

    /// Decommissions an asset: in one transaction, revokes every unexpired certificate
    /// (cessationOfOperation, or keyCompromise when `compromised`), deactivates its accounts,
    /// revokes its EAB keys, and audits each step. CRL and OCSP follow at once.
    pub fn decommission_asset(&self, name: &str, compromised: bool, actor: &str) -> Result<Decommissioned> {
        let now = self.clock.unix();
        let reason = if compromised { RevocationReason::KeyCompromise } else { RevocationReason::CessationOfOperation };
        let report = self.storage.write(|conn| {
            let asset = store::by_name(conn, name)?.ok_or_else(|| Error::not_found(format!("no asset {name:?}")))?;
            if !store::mark_decommissioned(conn, &asset.id, compromised, now)? {
                return Err(Error::conflict(format!("asset {name:?} is already decommissioned")));
            }
            let subject = asset_subject(&asset);
            audit::record(conn, Track::Machine,
                    now,
                    actor,
                    if compromised { "asset.compromised" } else { "asset.decommissioned" },
                    subject.clone(),
                    json!({ "owner_team": asset.owner_team, "service": asset.service }))?;
            let serials = certificates::live_for_asset(conn, &asset.id, now)?;
            for serial in &serials {
                certificates::revoke(conn, serial, reason as u8, now)?;
                audit::record(conn, Track::Machine,
                        now,
                        actor,
                        "certificate.revoked",
                        format!("certificate:{serial}"),
                        json!({ "reason": reason.name(), "asset": asset.name, "owner_team": asset.owner_team, "service": asset.service }))?;
            }
            let deactivated = accounts::deactivate_for_asset(conn, &asset.id, now)?;
            for account in &deactivated {
                audit::record(conn, Track::Machine,
                        now,
                        actor,
                        "account.deactivated",
                        format!("account:{account}"),
                        json!({ "asset": asset.name, "because": "asset decommissioned" }))?;
            }
            let keys = store::revoke_asset_eab_keys(conn, &asset.id, now)?;
            if keys > 0 {
                audit::record(conn, Track::Machine, now, actor, "eab.revoked", subject, json!({ "keys": keys }))?;
            }
            Ok(Decommissioned {
                asset: asset.name,
                revoked_serials: serials,
                deactivated_accounts: deactivated,
                revoked_eab_keys: keys,
            })
        })?;
        for serial in &report.revoked_serials {
            self.revocation_committed(Track::Machine, serial);
        }
        Ok(report)
    }

    pub(super) fn seal(&self, key: &[u8]) -> Result<Vec<u8>> {
        seal(&self.eab_kek, key)
    }

    fn unseal(&self, sealed: &[u8]) -> Result<Vec<u8>> {
        unseal(&self.eab_kek, sealed)
    }

    /// New EAB credentials for an active asset. The HMAC key is returned here and never again:
    /// storage holds it sealed under the data directory's key-encryption key.
    pub fn create_asset_eab(
        &self,
        name: &str,
        ttl_seconds: i64,
        single_use: bool,
        actor: &str,
    ) -> Result<EabCredentials> {
        let asset = self.asset(name)?;
        if asset.status != AssetStatus::Active {
            return Err(Error::conflict(format!("asset {name:?} is decommissioned")));
        }
        let key = ids::random_bytes::<32>();
        let sealed = self.seal(&key)?;
        let now = self.clock.unix();
        let kid = format!("eab-{}", ids::new_id());
        self.storage.write(|conn| {
            store::insert_eab(
                conn,
                &EabKeyRow {
                    kid: kid.clone(),
                    track: Track::Machine.as_str().into(),
                    asset_id: Some(asset.id.clone()),
                    person_id: None,
                    sealed_key: sealed,
                    single_use,
                    created_at: now,
                    expires_at: now + ttl_seconds,
                    used_at: None,
                    revoked_at: None,
                },
            )?;
            audit::append(
                conn,
                &AuditEvent::new(
                    Track::Machine,
                    now,
                    actor,
                    "eab.created",
                    asset_subject(&asset),
                    json!({ "kid": kid, "expires_at": now + ttl_seconds, "single_use": single_use }),
                ),
            )
        })?;
        Ok(EabCredentials { kid, hmac_key_b64: ids::b64url(&key), expires_at: now + ttl_seconds, single_use })
    }

    /// The asset's EAB keys, newest first (at most 200), without the keys themselves.
    pub fn asset_eab_keys(&self, name: &str) -> Result<Vec<EabKeyInfo>> {
        let asset = self.asset(name)?;
        let rows = self.storage.read(|conn| store::eab_keys_of_asset(conn, &asset.id, 200))?;
        Ok(rows
            .into_iter()
            .map(|r| EabKeyInfo {
                kid: r.kid,
                single_use: r.single_use,
                created_at: r.created_at,
                expires_at: r.expires_at,
                used_at: r.used_at,
                revoked_at: r.revoked_at,
            })
            .collect())
    }

    pub fn revoke_eab_key(&self, track: Track, kid: &str, actor: &str) -> Result<()> {
        let now = self.clock.unix();
        self.storage.write(|conn| {
            let row = store::eab(conn, kid)?
                .filter(|r| r.track == track.as_str())
                .ok_or_else(|| Error::not_found(format!("no EAB key {kid:?} on the {track} track")))?;
            if !store::revoke_eab(conn, kid, now)? {
                return Err(Error::conflict(format!("EAB key {kid:?} is already revoked")));
            }
            let track: Track = row.track.parse().map_err(Error::internal)?;
            audit::record(conn, track, now, actor, "eab.revoked", format!("eab:{kid}"), json!({}))?;
            Ok(())
        })
    }

    /// Checks an externalAccountBinding inside the account-creating transaction, and returns
    /// the asset it binds to. Any failure is `unauthorized`, except a malformed binding. It only
    /// reads: `consume_eab` records the use once the account is made.
    pub(super) fn verify_eab(
        &self,
        conn: &mut DbConnection,
        track: Track,
        proof: &EabProof,
        now: i64,
    ) -> Result<EabBinding> {
        let unauthorized =
            |why: &str| Error::new(ErrorKind::Unauthorized, format!("external account binding refused: {why}"));
        let row = store::eab(conn, &proof.kid)?.ok_or_else(|| unauthorized("unknown kid"))?;
        if row.track != track.as_str() {
            return Err(unauthorized("the kid belongs to the other track"));
        }
        if row.revoked_at.is_some() {
            return Err(unauthorized("the key has been revoked"));
        }
        if row.expires_at <= now {
            return Err(unauthorized("the key has expired"));
        }
        if row.single_use && row.used_at.is_some() {
            return Err(unauthorized("the key was single-use and has been used"));
        }
        let key = self.unseal(&row.sealed_key)?;
        let algorithm = match proof.alg.as_str() {
            "HS256" => ring::hmac::HMAC_SHA256,
            "HS384" => ring::hmac::HMAC_SHA384,
            "HS512" => ring::hmac::HMAC_SHA512,
            other => {
                return Err(Error::malformed(format!("externalAccountBinding alg {other:?} is not a MAC algorithm")))
            }
        };
        // ring compares in constant time, and a MAC of the wrong length simply fails.
        ring::hmac::verify(&ring::hmac::Key::new(algorithm, &key), &proof.signing_input, &proof.signature)
            .map_err(|_| unauthorized("the MAC does not verify"))?;
        // The key's holder is read with its row locked against change (`FOR SHARE` on
        // PostgreSQL), before `consume_eab` touches the key's row. A decommissioning or a leave
        // locks the same row first, so the two take turns in one order: either the account is
        // refused here, or the sweep that follows deactivates it. Taken the other way round
        // (key, then holder) the two deadlocked, and an account made during a leave outlived it.
        if let Some(asset_id) = &row.asset_id {
            let status = store::status_for_issuance(conn, asset_id)?
                .ok_or_else(|| Error::internal("EAB key of a missing asset"))?;
            if status != AssetStatus::Active {
                return Err(unauthorized("the asset is decommissioned"));
            }
        }
        if let Some(person_id) = &row.person_id {
            let (status, _) = crate::storage::people::standing_for_issuance(conn, person_id)?
                .ok_or_else(|| Error::internal("EAB key of a missing person"))?;
            if status != PersonStatus::Active {
                return Err(unauthorized("the person is not active"));
            }
        }
        Ok(EabBinding { asset_id: row.asset_id, person_id: row.person_id })
    }

    /// Records the use of an EAB key that `verify_eab` accepted, in the same transaction, once
    /// the account it binds is made: a compare-and-set (`mark_eab_used`) that refuses a key
    /// another transaction used (single-use), revoked or let expire since the check.
    pub(super) fn consume_eab(&self, conn: &mut DbConnection, proof: &EabProof, now: i64) -> Result<()> {
        if !store::mark_eab_used(conn, &proof.kid, now)? {
            return Err(Error::new(
                ErrorKind::Unauthorized,
                "external account binding refused: the key was used, revoked or expired while the account was made",
            ));
        }
        Ok(())
    }
}

pub use crate::storage::assets::AssetFilter as AssetQuery;

/// What an inventory sync would do.
#[derive(Debug, Clone, Default)]
pub struct SyncPlan {
    pub create: Vec<AssetSpec>,
    /// (current name, new spec, what differs)
    pub update: Vec<(String, AssetSpec, Vec<&'static str>)>,
    pub decommission: Vec<String>,
    pub unchanged: usize,
    /// Active assets before the sync: the base of the decommission share.
    pub active: usize,
}

impl SyncPlan {
    /// The share of active assets the plan would decommission.
    pub fn decommission_share(&self) -> f64 {
        if self.active == 0 {
            0.0
        } else {
            self.decommission.len() as f64 / self.active as f64
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    pub created: usize,
    pub updated: usize,
    pub decommissioned: Vec<Decommissioned>,
}

fn differences(current: &Asset, spec: &AssetSpec, identifiers: &[Identifier]) -> Vec<&'static str> {
    let mut diff = Vec::new();
    if current.kind.as_str() != spec.kind {
        diff.push("kind");
    }
    if current.owner_team != spec.owner_team || current.owner_email != spec.owner_email {
        diff.push("owner");
    }
    if current.service != spec.service {
        diff.push("service");
    }
    if current.environment != spec.environment {
        diff.push("environment");
    }
    let mut have = current.identifiers.clone();
    have.sort();
    let mut want = identifiers.to_vec();
    want.sort();
    if have != want {
        diff.push("identifiers");
    }
    if current.spiffe_id != spec.spiffe_id {
        diff.push("spiffe_id");
    }
    if current.profile != spec.profile {
        diff.push("profile");
    }
    diff
}

impl Ca {
    /// Compares the whole inventory as a CMDB exports it with the active assets: what to
    /// create, update, and decommission (active assets missing from the export). Every entry
    /// is validated first; one bad entry fails the plan.
    pub fn plan_inventory_sync(&self, specs: &[AssetSpec]) -> Result<SyncPlan> {
        let mut seen = std::collections::BTreeSet::new();
        let mut plan = SyncPlan::default();
        let active: Vec<Asset> =
            self.assets(&AssetFilter { status: Some(AssetStatus::Active), ..AssetFilter::default() })?;
        plan.active = active.len();
        for spec in specs {
            if !seen.insert(spec.name.clone()) {
                return Err(Error::malformed(format!("asset {:?} appears twice in the inventory", spec.name)));
            }
            let (_, identifiers) = self
                .validate_spec(spec)
                .map_err(|e| Error::new(e.kind, format!("asset {:?}: {}", spec.name, e.detail)))?;
            match active.iter().find(|a| a.name == spec.name) {
                None if self.storage.read(|conn| store::by_name(conn, &spec.name))?.is_some() => {
                    return Err(Error::conflict(format!(
                        "asset {:?} was decommissioned; a returning machine needs a new name",
                        spec.name
                    )));
                }
                None => plan.create.push(spec.clone()),
                Some(current) => {
                    let diff = differences(current, spec, &identifiers);
                    if diff.is_empty() {
                        plan.unchanged += 1;
                    } else {
                        plan.update.push((current.name.clone(), spec.clone(), diff));
                    }
                }
            }
        }
        plan.decommission = active.iter().filter(|a| !seen.contains(&a.name)).map(|a| a.name.clone()).collect();
        Ok(plan)
    }

    /// Carries out a plan. Refuses, changing nothing, when it would decommission more than
    /// `max_share` of the active assets and `force` is not given. Decommissions run first, so
    /// their identifiers are free for the assets created after them.
    pub fn apply_inventory_sync(
        &self,
        plan: &SyncPlan,
        max_share: f64,
        force: bool,
        actor: &str,
    ) -> Result<SyncReport> {
        if plan.decommission_share() > max_share && !force {
            return Err(Error::conflict(format!(
                "the sync would decommission {} of {} active assets ({:.0}%, more than {:.0}%): refused without force",
                plan.decommission.len(),
                plan.active,
                plan.decommission_share() * 100.0,
                max_share * 100.0
            )));
        }
        let mut report = SyncReport::default();
        for name in &plan.decommission {
            report.decommissioned.push(self.decommission_asset(name, false, actor)?);
        }
        for (name, spec, _) in &plan.update {
            self.update_asset(name, spec, actor)?;
            report.updated += 1;
        }
        for spec in &plan.create {
            self.register_asset(spec, actor)?;
            report.created += 1;
        }
        Ok(report)
    }
}

impl Ca {
    /// A redeploy: every certificate the asset holds now is revoked as superseded once
    /// `grace_seconds` have passed, leaving the new deployment time to get its own. Until then
    /// ARI tells the old deployment's clients to renew at once.
    pub fn redeploy_asset(&self, name: &str, grace_seconds: i64, actor: &str) -> Result<Vec<String>> {
        let now = self.clock.unix();
        self.storage.write(|conn| {
            let asset = store::by_name(conn, name)?.ok_or_else(|| Error::not_found(format!("no asset {name:?}")))?;
            if asset.status != AssetStatus::Active {
                return Err(Error::conflict(format!("asset {name:?} is decommissioned")));
            }
            let serials = certificates::live_for_asset(conn, &asset.id, now)?;
            for serial in &serials {
                crate::storage::scheduled::schedule(
                    conn,
                    serial,
                    Track::Machine,
                    now + grace_seconds,
                    RevocationReason::Superseded as u8,
                    actor,
                    now,
                )?;
            }
            audit::record(conn, Track::Machine,
                    now,
                    actor,
                    "asset.redeployed",
                    asset_subject(&asset),
                    json!({ "grace_seconds": grace_seconds, "superseded": serials, "owner_team": asset.owner_team, "service": asset.service }))?;
            Ok(serials)
        })
    }

    /// Carries out scheduled revocations that are due; the scheduler calls this every minute.
    /// Returns how many certificates it revoked.
    pub fn run_due_revocations(&self) -> Result<usize> {
        let now = self.clock.unix();
        let due = self.storage.read(|conn| crate::storage::scheduled::due(conn, now, 1000))?;
        let mut revoked = 0;
        for (serial, track, reason, by) in due {
            let track: Track = track.parse().map_err(Error::internal)?;
            let reason = RevocationReason::from_code(reason).unwrap_or(RevocationReason::Superseded);
            let done = self.storage.write(|conn| {
                crate::storage::scheduled::mark_done(conn, &serial, now)?;
                if !certificates::revoke(conn, &serial, reason as u8, now)? {
                    return Ok(false);
                }
                audit::record(
                    conn,
                    track,
                    now,
                    by.clone(),
                    "certificate.revoked",
                    format!("certificate:{serial}"),
                    json!({ "reason": reason.name(), "scheduled": true }),
                )?;
                Ok(true)
            })?;
            if done {
                self.revocation_committed(track, &serial);
                revoked += 1;
            }
        }
        Ok(revoked)
    }
}

impl Ca {
    /// Machine certificates past their ARI window that nothing has replaced: neither through
    /// `replaces` nor by a newer certificate of the same asset for the same identifiers.
    pub fn overdue_renewals(&self) -> Result<Vec<CertificateRecord>> {
        let now = self.clock.unix();
        let candidates = self.storage.read(|conn| certificates::renewal_candidates(conn, Track::Machine, now))?;
        let mut overdue = Vec::new();
        for cert in candidates {
            if cert.replaced_by.is_some()
                || crate::ari::suggested_window(cert.not_before, cert.not_after, false, now).end >= now
            {
                continue;
            }
            let Some(asset_id) = &cert.asset_id else { continue };
            let mut ids = cert.identifiers.clone();
            ids.sort();
            let newer =
                self.storage.read(|conn| certificates::newer_live_for_asset(conn, asset_id, cert.not_before, now))?;
            let renewed = newer.into_iter().any(|mut newer_ids| {
                newer_ids.sort();
                newer_ids == ids
            });
            if !renewed {
                overdue.push(cert);
            }
        }
        Ok(overdue)
    }

    /// The expiry safety net: tells each overdue certificate's owning team by mail, once, before
    /// it expires; audited with the mail in one transaction. Returns how many alerts went out.
    pub fn alert_overdue_renewals(&self) -> Result<usize> {
        let now = self.clock.unix();
        let mut sent = 0;
        for cert in self.overdue_renewals()? {
            let Some(asset_id) = &cert.asset_id else { continue };
            let asset = self.asset_by_id(asset_id)?;
            let names: Vec<String> = cert.identifiers.iter().map(|i| i.value.clone()).collect();
            let hours_left = (cert.not_after - now) / 3600;
            let mail = super::OutboundMail::notification(
                Track::Machine,
                asset.owner_email.clone(),
                format!("dualca: certificate for {} was not renewed", asset.name),
                &[
                    &format!(
                        "The certificate {} of asset {} (service {}) for {} is past its renewal window and has not been renewed.",
                        cert.serial,
                        asset.name,
                        asset.service,
                        names.join(", ")
                    ),
                    &format!(
                        "It expires at {} (in about {hours_left} h). Check the ACME client on the asset.",
                        crate::clock::rfc3339(cert.not_after)
                    ),
                ],
            )
            .with_dedupe_key(format!("renewal-overdue:{}", cert.serial), cert.not_after);
            let alerted = self.storage.write(|conn| {
                if !super::outbox::enqueue(conn, &mail, now)? {
                    return Ok(false);
                }
                audit::record(conn, Track::Machine,
                        now,
                        "system",
                        "certificate.renewal-overdue",
                        format!("certificate:{}", cert.serial),
                        json!({ "asset": asset.name, "owner_team": asset.owner_team, "service": asset.service, "not_after": cert.not_after }))?;
                Ok(true)
            })?;
            if alerted {
                sent += 1;
            }
        }
        Ok(sent)
    }
}

/// The associated data of a sealed EAB key.
const EAB_AAD: &[u8] = b"dualca-eab";

/// An EAB HMAC key sealed under the key-encryption key: AES-256-GCM, stored as
/// `nonce (12) || ciphertext || tag (16)` with the associated data `dualca-eab`. ring's AEAD,
/// set up per call (about a microsecond, once per newAccount with EAB); OpenSSL's looked the
/// cipher up on every call, 0.5 % of the server's CPU per issuance (BENCHMARKS.md, eleventh run).
fn seal(kek: &[u8; 32], key: &[u8]) -> Result<Vec<u8>> {
    let nonce = ids::random_bytes::<NONCE_LEN>();
    let mut sealed = key.to_vec();
    let tag = aead_key(kek)
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(EAB_AAD), &mut sealed)
        .map_err(|_| Error::internal("sealing an EAB key failed"))?;
    Ok([nonce.as_slice(), &sealed, tag.as_ref()].concat())
}

fn unseal(kek: &[u8; 32], sealed: &[u8]) -> Result<Vec<u8>> {
    if sealed.len() < NONCE_LEN + 16 {
        return Err(Error::internal("sealed EAB key is too short"));
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Error::internal("bad EAB nonce"))?;
    let mut opened = rest.to_vec();
    let plain = aead_key(kek)
        .open_in_place(nonce, Aad::from(EAB_AAD), &mut opened)
        .map_err(|_| Error::internal("an EAB key does not open with this data directory's key-encryption key"))?;
    Ok(plain.to_vec())
}

fn aead_key(kek: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, kek).expect("a 32-byte key is an AES-256 key"))
}

#[cfg(test)]
mod sealing_tests {
    use super::*;
    use openssl::symm::{decrypt_aead, encrypt_aead, Cipher};

    /// Keys sealed before ring took over (with OpenSSL) still open, and keys sealed now open
    /// with OpenSSL: the stored format did not change.
    #[test]
    fn sealed_keys_open_either_way_and_tampering_is_caught() {
        let kek: [u8; 32] = ids::random_bytes();
        let key: [u8; 32] = ids::random_bytes();

        let nonce = [7u8; 12];
        let mut tag = [0u8; 16];
        let ciphertext = encrypt_aead(Cipher::aes_256_gcm(), &kek, Some(&nonce), EAB_AAD, &key, &mut tag).unwrap();
        let by_openssl = [nonce.as_slice(), &ciphertext, &tag].concat();
        assert_eq!(unseal(&kek, &by_openssl).unwrap(), key);

        let by_ring = seal(&kek, &key).unwrap();
        assert_eq!(by_ring.len(), 12 + 32 + 16);
        let (nonce, rest) = by_ring.split_at(12);
        let (ciphertext, tag) = rest.split_at(rest.len() - 16);
        let opened = decrypt_aead(Cipher::aes_256_gcm(), &kek, Some(nonce), EAB_AAD, ciphertext, tag).unwrap();
        assert_eq!(opened, key);
        assert_ne!(seal(&kek, &key).unwrap(), by_ring, "every seal takes a fresh nonce");

        let mut flipped = by_ring.clone();
        flipped[20] ^= 1;
        assert!(unseal(&kek, &flipped).is_err());
        assert!(unseal(&ids::random_bytes(), &by_ring).is_err());
        assert!(unseal(&kek, &by_ring[..27]).is_err());
    }
}
