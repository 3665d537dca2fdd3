//! Orders, authorizations, challenges and finalize (RFC 8555 §7.4, §7.5).

use std::collections::BTreeSet;

use serde_json::json;

use super::Ca;
use crate::audit;
use crate::csr::check_csr;
use crate::model::*;
use crate::status::{authorization_status, order_status};
use crate::storage::rows::{identifiers_to_text, AuthorizationRow, CertificateRow, ChallengeRow, Holder, OrderRow};
use crate::storage::{accounts, assets, certificates, orders as store, people, Backend, DbConnection};
use crate::{ids, issuance, Error, ErrorKind, Result, Track};

/// A newOrder request once its JWS has been verified: identifiers as the client sent them.
pub struct NewOrder {
    pub identifiers: Vec<(String, String)>,
    pub profile: Option<String>,
    pub replaces: Option<String>,
}

/// What a validator needs to check one challenge.
#[derive(Debug, Clone)]
pub struct ValidationTarget {
    pub challenge: Challenge,
    pub identifier: Identifier,
    pub account_thumbprint: String,
    /// False when the challenge was already processing or done: nothing new to validate.
    pub start: bool,
    /// The track the challenge was found on, which its outcome is recorded on: private, so
    /// that only `begin_validation` makes a target.
    track: Track,
}

fn actor(account_id: &str) -> String {
    format!("account:{account_id}")
}

fn challenge_kinds(identifier: &Identifier, wildcard: bool) -> Vec<ChallengeKind> {
    match identifier.kind {
        IdentifierKind::Dns if wildcard => vec![ChallengeKind::Dns01],
        IdentifierKind::Dns => vec![ChallengeKind::Http01, ChallengeKind::Dns01, ChallengeKind::TlsAlpn01],
        IdentifierKind::Ip => vec![ChallengeKind::Http01, ChallengeKind::TlsAlpn01],
        IdentifierKind::Email => vec![ChallengeKind::EmailReply00],
    }
}

fn ensure_owner(account: &Account, owner: &str, what: &str) -> Result<()> {
    if account.id != owner {
        return Err(Error::unauthorized(format!("this {what} belongs to another account")));
    }
    Ok(())
}

impl Ca {
    pub fn new_order(&self, account: &Account, request: NewOrder) -> Result<Order> {
        let track = account.track;
        let policy = self.policy(track);
        if request.identifiers.is_empty() {
            return Err(Error::malformed("an order needs at least one identifier"));
        }
        let mut identifiers = BTreeSet::new();
        for (kind, value) in &request.identifiers {
            identifiers.insert(policy.check_identifier(kind, value)?);
        }
        if identifiers.len() > policy.max_identifiers {
            return Err(Error::rejected_identifier(format!(
                "an order on the {track} track may name at most {} identifiers",
                policy.max_identifiers
            )));
        }
        let asset = self.bound_asset(account)?;
        let requested_profile = match (&asset, request.profile.as_deref()) {
            (Some(asset), requested) => match (&asset.profile, requested) {
                (Some(pinned), Some(asked)) if pinned != asked => {
                    return Err(Error::invalid_profile(format!(
                        "asset {:?} is pinned to profile {pinned:?}, not {asked:?}",
                        asset.name
                    )))
                }
                (Some(pinned), _) => Some(pinned.clone()),
                (None, asked) => asked.map(str::to_string),
            },
            (None, asked) => asked.map(str::to_string),
        };
        let profile = policy.profile(requested_profile.as_deref())?.name.clone();
        let identifiers: Vec<Identifier> = identifiers.into_iter().collect();
        self.check_person(account, &profile, &identifiers)?;
        if let Some(asset) = &asset {
            for id in &identifiers {
                if !asset.identifiers.contains(id) {
                    return Err(Error::rejected_identifier(format!("{id} does not belong to asset {:?}", asset.name)));
                }
            }
        }
        let now = self.clock.unix();
        let replaces = match &request.replaces {
            None => None,
            Some(cert_id) => Some(self.check_replaces(account, cert_id, &identifiers)?),
        };
        let order_id = ids::new_id();
        let expires = now + policy.order_lifetime_seconds;
        let authz_expires = now + policy.authorization_lifetime_seconds.min(policy.order_lifetime_seconds);
        let order_row = OrderRow {
            id: order_id.clone(),
            track: track.as_str().into(),
            account_id: account.id.clone(),
            status: OrderStatus::Pending.as_str().into(),
            identifiers: identifiers_to_text(&identifiers),
            profile: profile.clone(),
            expires,
            error: None,
            certificate_serial: None,
            replaces: replaces.clone(),
            created_at: now,
            created_micros: (self.clock.now().unix_timestamp_nanos() / 1000) as i64,
        };
        let mut authorizations = Vec::with_capacity(identifiers.len());
        let mut challenges = Vec::new();
        for (position, identifier) in identifiers.iter().enumerate() {
            let wildcard = identifier.is_wildcard();
            let authz_id = ids::new_id();
            challenges.extend(challenge_kinds(identifier, wildcard).into_iter().enumerate().map(|(i, kind)| {
                ChallengeRow {
                    id: ids::new_id(),
                    authorization_id: authz_id.clone(),
                    kind: kind.as_str().into(),
                    token: ids::new_token(),
                    status: ChallengeStatus::Pending.as_str().into(),
                    validated: None,
                    error: None,
                    position: i as i64,
                }
            }));
            authorizations.push(AuthorizationRow {
                id: authz_id,
                track: track.as_str().into(),
                account_id: account.id.clone(),
                order_id: order_id.clone(),
                identifier_type: identifier.kind.as_str().into(),
                identifier_value: identifier.authorization_value().to_string(),
                wildcard,
                status: AuthzStatus::Pending.as_str().into(),
                expires: authz_expires,
                position: position as i64,
                created_at: now,
            });
        }
        let event = audit::AuditEvent::new(
            track,
            now,
            actor(&account.id),
            "order.created",
            format!("order:{order_id}"),
            json!({ "identifiers": identifiers.iter().map(ToString::to_string).collect::<Vec<_>>(), "profile": profile }),
        );
        let email_reply = |c: &ChallengeRow| c.kind == ChallengeKind::EmailReply00.as_str();
        if self.storage.backend() == Backend::Postgres && !challenges.iter().any(email_reply) {
            // One statement outside a transaction, five round trips fewer. An email-reply-00
            // challenge also stores its token and enqueues its mail: those orders take the
            // transaction below.
            self.storage.autocommit(|conn| {
                store::insert_order_in_one_statement(conn, &order_row, &authorizations, &challenges, &event)
            })?;
        } else {
            self.storage.write(|conn| {
                store::insert_order(conn, &order_row)?;
                for authorization in &authorizations {
                    store::insert_authorization(conn, authorization)?;
                    let own: Vec<ChallengeRow> =
                        challenges.iter().filter(|c| c.authorization_id == authorization.id).cloned().collect();
                    store::insert_challenges(conn, &own)?;
                    for challenge in own.iter().filter(|c| email_reply(c)) {
                        let identifier = &identifiers[authorization.position as usize];
                        self.create_email_challenge(conn, &challenge.id, &identifier.value, now)?;
                    }
                }
                audit::append(conn, &event)?;
                Ok(())
            })?;
        }
        // The order as `load_order` would read it back, without reading it: every
        // authorization was just made pending.
        let pending = vec![AuthzStatus::Pending; authorizations.len()];
        let mut order = order_row.into_domain(authorizations.into_iter().map(|a| a.id).collect())?;
        order.status = order_status(order.status, &pending, order.expires, now);
        Ok(order)
    }

    /// The order with its status derived as of now.
    pub fn order(&self, track: Track, id: &str) -> Result<Order> {
        let now = self.clock.unix();
        self.storage.read(|conn| load_order(conn, track, id, now))
    }

    /// A page of an account's order ids after `cursor`, and the cursor of the next page.
    pub fn orders_page(&self, account: &Account, cursor: Option<&str>) -> Result<(Vec<String>, Option<String>)> {
        let after = match cursor {
            None => None,
            Some(c) => {
                let (at, id) = c.split_once('.').ok_or_else(|| Error::malformed("invalid orders cursor"))?;
                Some((at.parse::<i64>().map_err(|_| Error::malformed("invalid orders cursor"))?, id.to_string()))
            }
        };
        let size = self.policy(account.track).orders_page_size;
        let mut page = self.storage.read(|conn| store::order_ids_page(conn, &account.id, after, size + 1))?;
        let next = if page.len() > size {
            page.truncate(size);
            page.last().map(|(at, id)| format!("{at}.{id}"))
        } else {
            None
        };
        Ok((page.into_iter().map(|(_, id)| id).collect(), next))
    }

    pub fn authorization(&self, track: Track, id: &str) -> Result<Authorization> {
        let now = self.clock.unix();
        self.storage.read(|conn| load_authorization(conn, track, id, now))
    }

    /// RFC 8555 §7.5.2: the client gives up an authorization it holds.
    pub fn deactivate_authorization(&self, account: &Account, id: &str) -> Result<Authorization> {
        let now = self.clock.unix();
        let track = account.track;
        self.storage.write(|conn| {
            let authz = load_authorization(conn, track, id, now)?;
            ensure_owner(account, &authz.account_id, "authorization")?;
            if !matches!(authz.status, AuthzStatus::Pending | AuthzStatus::Valid) {
                return Err(Error::malformed(format!(
                    "an authorization that is {} cannot be deactivated",
                    authz.status.as_str()
                )));
            }
            store::set_authorization_status(conn, id, AuthzStatus::Deactivated)?;
            audit::record(
                conn,
                track,
                now,
                actor(&account.id),
                "authorization.deactivated",
                format!("authorization:{id}"),
                json!({ "identifier": authz.identifier.to_string() }),
            )?;
            load_authorization(conn, track, id, now)
        })
    }

    /// The challenge and the authorization it belongs to, without the authorization's
    /// challenges (`challenges` is empty).
    pub fn challenge(&self, track: Track, id: &str) -> Result<(Challenge, Authorization)> {
        let now = self.clock.unix();
        self.storage.read(|conn| load_challenge(conn, track, id, now))
    }

    /// RFC 8555 §7.5.1: the client says it is ready. For a challenge validated over the
    /// network (http-01, dns-01, tls-alpn-01) this only reads: a pending challenge comes back
    /// with `start`, the caller validates it, and `complete_validation` moves it from pending
    /// (or processing) to its outcome in one commit. A validation that outlasts the response
    /// is recorded as processing by `mark_processing`. An email-reply-00 challenge moves to
    /// processing here, since its outcome waits for a mail. Any other state comes back as it is.
    pub fn begin_validation(&self, account: &Account, challenge_id: &str) -> Result<ValidationTarget> {
        let now = self.clock.unix();
        let track = account.track;
        let (challenge, authz) = self.storage.read(|conn| load_challenge(conn, track, challenge_id, now))?;
        ensure_owner(account, &authz.account_id, "challenge")?;
        if challenge.kind == ChallengeKind::EmailReply00 {
            return self.begin_email_validation(account, challenge_id);
        }
        let start = challenge.status == ChallengeStatus::Pending;
        if start {
            ensure_answerable(&authz)?;
        }
        Ok(ValidationTarget {
            identifier: authz.identifier,
            account_thumbprint: account.key_thumbprint.clone(),
            start,
            challenge,
            track,
        })
    }

    /// Records that a network validation is under way, for a response that will not wait for
    /// it: pending moves to processing. Returns the challenge as it now stands (already settled,
    /// when the outcome came first).
    pub fn mark_processing(&self, track: Track, challenge_id: &str) -> Result<Challenge> {
        let now = self.clock.unix();
        self.storage.write(|conn| {
            // The track's check: a challenge of the other track is not found.
            load_challenge(conn, track, challenge_id, now)?;
            start_processing(conn, challenge_id)?;
            store::challenge(conn, challenge_id)?.ok_or_else(|| not_found("challenge", challenge_id))
        })
    }

    /// `begin_validation` for email-reply-00: moves a pending challenge to processing, and
    /// settles it at once when its reply came first.
    fn begin_email_validation(&self, account: &Account, challenge_id: &str) -> Result<ValidationTarget> {
        let now = self.clock.unix();
        let track = account.track;
        self.storage.write(|conn| {
            // Before the challenge is read: a reply arriving meanwhile waits (`lock`).
            crate::storage::email_challenges::lock(conn, challenge_id)?;
            let (challenge, authz) = load_challenge(conn, track, challenge_id, now)?;
            ensure_owner(account, &authz.account_id, "challenge")?;
            let mut target = ValidationTarget {
                identifier: authz.identifier.clone(),
                account_thumbprint: account.key_thumbprint.clone(),
                start: false,
                challenge: challenge.clone(),
                track,
            };
            if challenge.status != ChallengeStatus::Pending {
                return Ok(target);
            }
            ensure_answerable(&authz)?;
            if start_processing(conn, challenge_id)? {
                target.challenge.status = ChallengeStatus::Processing;
                // No network validation: the reply, received or still to come, decides.
                if let Some(settled) = self.settle_email_challenge(conn, &target.challenge, &authz, now)? {
                    target.challenge = settled;
                }
            }
            Ok(target)
        })
    }

    /// Records a validation's outcome on the challenge and its authorization; returns the
    /// challenge as it now stands (settled by this outcome, or by an earlier one).
    ///
    /// `target` is what `begin_validation` read before the validation ran, on the track it
    /// found the challenge on. On PostgreSQL the outcome is settled from it without reading the
    /// challenge again: what the settlement takes from it (the challenge's id, kind and token,
    /// the identifier) never changes, and the statement that records it checks the challenge's
    /// and the authorization's current state itself. On SQLite the transaction reads them
    /// again, which costs no round trip.
    pub fn complete_validation(
        &self,
        target: &ValidationTarget,
        outcome: Result<(), StoredProblem>,
    ) -> Result<Challenge> {
        let now = self.clock.unix();
        let track = target.track;
        let challenge_id = target.challenge.id.as_str();
        // Pending when no response had to say processing before the outcome came. Both states
        // are accepted in one compare-and-set: on PostgreSQL a `mark_processing` may commit
        // between the read and the update.
        const UNSETTLED: [ChallengeStatus; 2] = [ChallengeStatus::Pending, ChallengeStatus::Processing];
        // Settled earlier, by another outcome: as it stands.
        let settled_by_another = |conn: &mut DbConnection| {
            store::challenge(conn, challenge_id)?
                .ok_or_else(|| Error::internal(format!("challenge {challenge_id} vanished while it was settled")))
        };
        // On PostgreSQL one statement that commits by itself: the compare-and-set makes
        // settling from what was read before the validation safe, and the statement checks the
        // authorization's state itself. Five round trips fewer than the transaction below.
        if self.storage.backend() == Backend::Postgres {
            let settled = Settlement::of(track, &target.challenge, &target.identifier, &outcome, now);
            let won = self.storage.autocommit(|conn| {
                let to = &settled.challenge;
                store::settle_network_challenge(
                    conn,
                    challenge_id,
                    UNSETTLED,
                    (to.status, to.validated, to.error.as_ref()),
                    settled.authz_status,
                    now,
                    &settled.event,
                )
            })?;
            return if won { Ok(settled.challenge) } else { self.storage.read(settled_by_another) };
        }
        self.storage.write(|conn| {
            let (challenge, authz) = load_challenge(conn, track, challenge_id, now)?;
            if let Some(settled) =
                record_validation_outcome(conn, track, &challenge, &UNSETTLED, &authz, &outcome, now)?
            {
                return Ok(settled);
            }
            settled_by_another(conn)
        })
    }

    /// RFC 8555 §7.4: checks the CSR against the order and issues. The certificate row and the
    /// order's move to valid commit in one transaction, before the response leaves.
    pub fn finalize(&self, account: &Account, order_id: &str, csr_der: &[u8]) -> Result<Order> {
        let track = account.track;
        let now_time = self.clock.now();
        let now = now_time.unix_timestamp();
        let order = self.order(track, order_id)?;
        ensure_owner(account, &order.account_id, "order")?;
        if order.status != OrderStatus::Ready {
            return Err(Error::order_not_ready(format!(
                "the order is {}, not ready: finalize is accepted once every authorization is valid",
                order.status.as_str()
            )));
        }
        let csr = check_csr(csr_der)?;
        let ordered: BTreeSet<Identifier> = order.identifiers.iter().cloned().collect();
        if csr.identifiers != ordered {
            let extra: Vec<String> = csr.identifiers.difference(&ordered).map(ToString::to_string).collect();
            let missing: Vec<String> = ordered.difference(&csr.identifiers).map(ToString::to_string).collect();
            return Err(Error::bad_csr(format!(
                "the CSR's names differ from the order's (not in the order: [{}]; missing from the CSR: [{}])",
                extra.join(", "),
                missing.join(", ")
            )));
        }
        if csr.key_thumbprint == account.key_thumbprint {
            return Err(Error::bad_csr("the CSR's key is the account key; certificates need a key of their own"));
        }
        let policy = self.policy(track);
        let profile = policy.profile(Some(&order.profile))?;
        self.check_person(account, &order.profile, &order.identifiers)?;
        let asset = self.bound_asset(account)?;
        if let Some(asset) = &asset {
            for id in &order.identifiers {
                if !asset.identifiers.contains(id) {
                    return Err(Error::rejected_identifier(format!(
                        "{id} no longer belongs to asset {:?}",
                        asset.name
                    )));
                }
            }
        }
        let uris: Vec<String> = asset.as_ref().and_then(|a| a.spiffe_id.clone()).into_iter().collect();
        let issuer = self.hierarchy.issuer(track);
        let prepared = issuance::prepare(
            policy,
            profile,
            issuance::Names { identifiers: &order.identifiers, uris: &uris },
            &csr,
            &self.certificate_urls(track, profile),
            issuer.not_after,
            now_time,
        )?;
        let issued = issuance::issue(prepared, issuer)?;
        let person = account.person_id.as_ref().map(|id| self.person_by_id(id)).transpose()?;
        self.storage.write(|conn| {
            // What was checked above, again inside the transaction that records the
            // certificate: a decommissioning or a leaver that committed since then revoked
            // everything it could see, and this certificate would not have been among it.
            still_entitled(conn, account, asset.as_ref(), person.as_ref(), &order.identifiers)?;
            if let Some(person) = &person {
                // So that misuse of a person's address is noticed: they hear of every issuance.
                let names: Vec<String> = issued.identifiers.iter().map(|i| i.value.clone()).collect();
                let mail = super::OutboundMail::notification(
                    Track::Human,
                    person.email.clone(),
                    "dualca: a certificate was issued for you",
                    &[
                        &format!(
                            "A {} certificate for {} was issued (serial {}), valid until {}.",
                            issued.profile,
                            names.join(", "),
                            issued.serial_hex,
                            crate::clock::rfc3339(issued.not_after)
                        ),
                        "If you did not request it, tell the help desk at once.",
                    ],
                );
                super::outbox::enqueue(conn, &mail, now)?;
            }
            if !store::set_order_valid(conn, order_id, OrderStatus::Pending, &issued.serial_hex)? {
                return Err(Error::order_not_ready("the order was finalized meanwhile"));
            }
            certificates::insert(
                conn,
                &CertificateRow::issued(
                    &issued,
                    Holder {
                        account_id: Some(account.id.clone()),
                        order_id: Some(order_id.to_string()),
                        asset_id: asset.as_ref().map(|a| a.id.clone()),
                        person_id: account.person_id.clone(),
                    },
                    now,
                ),
            )?;
            audit::record(
                conn,
                track,
                now,
                actor(&account.id),
                "certificate.issued",
                format!("certificate:{}", issued.serial_hex),
                json!({
                    "order": order_id,
                    "profile": issued.profile,
                    "identifiers": issued.identifiers.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "not_before": issued.not_before,
                    "not_after": issued.not_after,
                    "asset": asset.as_ref().map(|a| a.name.clone()),
                    "owner_team": asset.as_ref().map(|a| a.owner_team.clone()),
                    "service": asset.as_ref().map(|a| a.service.clone()),
                    "replaces": order.replaces,
                }),
            )?;
            if let Some(old) = &order.replaces {
                if !certificates::set_replaced_by(conn, old, &issued.serial_hex)? {
                    return Err(Error::already_replaced(format!("certificate {old} was already replaced")));
                }
            }
            // The order as `load_order` would read it back: `set_order_valid` moved it, and
            // nothing else, from pending to valid with the serial, and a valid order stays so.
            Ok(Order {
                status: OrderStatus::Valid,
                certificate_serial: Some(issued.serial_hex.clone()),
                error: None,
                ..order.clone()
            })
        })
    }

    /// A certificate of this track, for download by the account that ordered it.
    pub fn certificate_for(&self, account: &Account, serial: &str) -> Result<CertificateRecord> {
        let cert = self
            .storage
            .read(|conn| certificates::by_serial(conn, account.track, serial))?
            .ok_or_else(|| Error::not_found(format!("no certificate with serial {serial}")))?;
        if cert.account_id.as_deref() != Some(account.id.as_str()) {
            return Err(Error::unauthorized("this certificate belongs to another account"));
        }
        Ok(cert)
    }
}

fn not_found(what: &str, id: &str) -> Error {
    Error::not_found(format!("no {what} {id:?} on this track"))
}

fn load_order(conn: &mut DbConnection, track: Track, id: &str, now: i64) -> Result<Order> {
    let (mut order, mut authorizations) =
        store::order_with_authorizations(conn, track, id)?.ok_or_else(|| not_found("order", id))?;
    let statuses: Vec<AuthzStatus> =
        authorizations.iter().map(|a| authorization_status(a.status, a.expires, now)).collect();
    order.status = order_status(order.status, &statuses, order.expires, now);
    if order.status == OrderStatus::Invalid && order.error.is_none() {
        // Only the problem of an invalid order needs the challenges (their errors).
        store::order_challenges(conn, id, &mut authorizations)?;
        order.error = Some(invalid_order_problem(&authorizations, &statuses));
    }
    Ok(order)
}

/// Why an order is invalid, in the words of the challenge that failed when there is one.
fn invalid_order_problem(authorizations: &[Authorization], statuses: &[AuthzStatus]) -> StoredProblem {
    for (authz, status) in authorizations.iter().zip(statuses) {
        let failed = authz.challenges.iter().find_map(|c| c.error.as_ref());
        match (status, failed) {
            (AuthzStatus::Invalid, Some(problem)) => {
                return StoredProblem {
                    kind: problem.kind,
                    detail: format!("authorization for {} failed: {}", authz.identifier, problem.detail),
                }
            }
            (AuthzStatus::Deactivated | AuthzStatus::Expired | AuthzStatus::Revoked, _) => {
                return StoredProblem {
                    kind: ErrorKind::Unauthorized,
                    detail: format!("authorization for {} is {}", authz.identifier, status.as_str()),
                }
            }
            _ => {}
        }
    }
    StoredProblem { kind: ErrorKind::Unauthorized, detail: "the order expired before it was finalized".into() }
}

fn load_authorization(conn: &mut DbConnection, track: Track, id: &str, now: i64) -> Result<Authorization> {
    let mut authz = store::authorization(conn, track, id)?.ok_or_else(|| not_found("authorization", id))?;
    authz.status = authorization_status(authz.status, authz.expires, now);
    Ok(authz)
}

/// Moves a pending challenge to processing; false when it was no longer pending.
fn start_processing(conn: &mut DbConnection, challenge_id: &str) -> Result<bool> {
    store::transition_challenge(
        conn,
        challenge_id,
        &[ChallengeStatus::Pending],
        ChallengeStatus::Processing,
        None,
        None,
    )
}

/// Refuses an answer to a challenge whose authorization is no longer pending.
fn ensure_answerable(authz: &Authorization) -> Result<()> {
    if authz.status != AuthzStatus::Pending {
        return Err(Error::malformed(format!(
            "the authorization is {}; its challenges can no longer be answered",
            authz.status.as_str()
        )));
    }
    Ok(())
}

/// Moves a challenge from one of `from` (processing; or, for a network validation, pending
/// as well, when no response reported it as processing) to valid or invalid, and its
/// authorization with it, with the audit event. Returns the challenge as it now stands, as a
/// read would find it; `None`, changing nothing, when the challenge was in none of them.
pub(super) fn record_validation_outcome(
    conn: &mut DbConnection,
    track: Track,
    challenge: &Challenge,
    from: &[ChallengeStatus],
    authz: &Authorization,
    outcome: &Result<(), StoredProblem>,
    now: i64,
) -> Result<Option<Challenge>> {
    let settled = Settlement::of(track, challenge, &authz.identifier, outcome, now);
    let to = &settled.challenge;
    if !store::transition_challenge(conn, &challenge.id, from, to.status, to.validated, to.error.as_ref())? {
        return Ok(None);
    }
    // An authorization that expired or was deactivated meanwhile keeps that state: as read
    // here, and as it is when the UPDATE runs (on PostgreSQL a deactivation may commit between).
    if authz.status == AuthzStatus::Pending {
        store::settle_authorization(conn, &authz.id, settled.authz_status, now)?;
    }
    audit::append(conn, &settled.event)?;
    Ok(Some(settled.challenge))
}

/// What an outcome makes of a challenge: the challenge as it then stands, its authorization's
/// new status, and the audit event that records it.
struct Settlement {
    challenge: Challenge,
    authz_status: AuthzStatus,
    event: audit::AuditEvent,
}

impl Settlement {
    fn of(
        track: Track,
        challenge: &Challenge,
        identifier: &Identifier,
        outcome: &Result<(), StoredProblem>,
        now: i64,
    ) -> Settlement {
        let (to, authz_status, action) = match outcome {
            Ok(()) => (ChallengeStatus::Valid, AuthzStatus::Valid, "challenge.valid"),
            Err(_) => (ChallengeStatus::Invalid, AuthzStatus::Invalid, "challenge.invalid"),
        };
        let details = match outcome {
            Ok(()) => json!({ "identifier": identifier.to_string(), "type": challenge.kind.as_str() }),
            Err(p) => {
                json!({ "identifier": identifier.to_string(), "type": challenge.kind.as_str(), "error": p.kind.name(), "detail": p.detail })
            }
        };
        Settlement {
            challenge: Challenge {
                status: to,
                validated: outcome.is_ok().then_some(now),
                error: outcome.as_ref().err().cloned(),
                ..challenge.clone()
            },
            authz_status,
            event: audit::AuditEvent::new(track, now, "system", action, format!("challenge:{}", challenge.id), details),
        }
    }
}

/// The challenge and its authorization, the latter without its challenges (`challenges` is
/// empty): what answering or settling a challenge needs is the authorization's owner, status and
/// identifier.
pub(super) fn load_challenge(
    conn: &mut DbConnection,
    track: Track,
    id: &str,
    now: i64,
) -> Result<(Challenge, Authorization)> {
    let (challenge, mut authz) =
        store::challenge_with_authorization(conn, track, id)?.ok_or_else(|| not_found("challenge", id))?;
    authz.status = authorization_status(authz.status, authz.expires, now);
    Ok((challenge, authz))
}

impl Ca {
    /// The asset a machine-track account is bound to, which must be active. On a track that
    /// requires EAB, an account without an asset is refused: machines fail closed.
    fn bound_asset(&self, account: &Account) -> Result<Option<Asset>> {
        match &account.asset_id {
            Some(id) => {
                let asset = self.asset_by_id(id)?;
                if asset.status != AssetStatus::Active {
                    return Err(Error::unauthorized(format!("asset {:?} is decommissioned", asset.name)));
                }
                Ok(Some(asset))
            }
            None if account.track == Track::Machine && self.policy(Track::Machine).external_account_required => {
                Err(Error::unauthorized("this account is not bound to an asset"))
            }
            None => Ok(None),
        }
    }

    /// RFC 9773 §5: the replaced certificate must be this track's, the same account's (or the
    /// same asset's), share an identifier with the new order, and not be replaced already.
    fn check_replaces(&self, account: &Account, cert_id: &str, identifiers: &[Identifier]) -> Result<String> {
        let (aki, serial) = crate::ari::parse_cert_id(cert_id)?;
        if aki != self.hierarchy.issuer(account.track).subject_key_identifier {
            return Err(Error::malformed(format!("replaces names a certificate of another issuer ({cert_id})")));
        }
        let old = self
            .storage
            .read(|conn| certificates::by_serial(conn, account.track, &serial))?
            .ok_or_else(|| Error::malformed(format!("replaces names an unknown certificate ({cert_id})")))?;
        let old_asset = self.storage.read(|conn| certificates::asset_of(conn, &serial))?;
        let same_owner = old.account_id.as_deref() == Some(account.id.as_str())
            || (account.asset_id.is_some() && old_asset == account.asset_id);
        if !same_owner {
            return Err(Error::unauthorized("replaces names a certificate of another account"));
        }
        if !old.identifiers.iter().any(|id| identifiers.contains(id)) {
            return Err(Error::malformed("the order shares no identifier with the certificate it replaces"));
        }
        if let Some(by) = &old.replaced_by {
            return Err(Error::already_replaced(format!("certificate {serial} was already replaced by {by}")));
        }
        Ok(serial)
    }

    /// RFC 9773 §4.2: the suggested renewal window for a certificate of this track.
    pub fn renewal_info(&self, track: Track, cert_id: &str) -> Result<crate::ari::Window> {
        let (aki, serial) = crate::ari::parse_cert_id(cert_id)?;
        let not_found = || Error::not_found(format!("no certificate {cert_id} on the {track} track"));
        if aki != self.hierarchy.issuer(track).subject_key_identifier {
            return Err(not_found());
        }
        let cert = self.storage.read(|conn| certificates::by_serial(conn, track, &serial))?.ok_or_else(not_found)?;
        let asset_id = self.storage.read(|conn| certificates::asset_of(conn, &serial))?;
        let asset_gone = match asset_id {
            Some(id) => {
                let asset = self.asset_by_id(&id)?;
                asset.status != AssetStatus::Active || asset.compromised
            }
            None => false,
        };
        let superseded = self.storage.read(|conn| crate::storage::scheduled::is_scheduled(conn, &serial))?;
        let replace_now = asset_gone || superseded || cert.status == CertificateStatus::Revoked;
        Ok(crate::ari::suggested_window(cert.not_before, cert.not_after, replace_now, self.clock.unix()))
    }
}

impl Ca {
    /// A person-bound account orders only while its person is active, only for their own
    /// address, and only profiles their proofing level allows: smime needs email proofing, client-auth a help-desk check.
    fn check_person(&self, account: &Account, profile: &str, identifiers: &[Identifier]) -> Result<()> {
        let Some(person_id) = &account.person_id else { return Ok(()) };
        let person = self.person_by_id(person_id)?;
        if person.status != PersonStatus::Active {
            return Err(Error::unauthorized(format!("{} is {}", person.email, person.status.as_str())));
        }
        // Checked again at finalize: a mover's new address replaces the old one at once.
        for id in identifiers {
            if id.kind != IdentifierKind::Email || !id.value.eq_ignore_ascii_case(&person.email) {
                return Err(Error::rejected_identifier(format!(
                    "{id} is not {}'s address: a person's certificates name only their own mailbox",
                    person.email
                )));
            }
        }
        let needed = match profile {
            "client-auth" => ProofingLevel::Helpdesk,
            _ => ProofingLevel::Email,
        };
        if person.proofing_level.rank() < needed.rank() {
            return Err(Error::new(
                ErrorKind::UserActionRequired,
                format!(
                    "profile {profile} needs proofing level {}; {} has {}: ask the help desk",
                    needed.as_str(),
                    person.email,
                    person.proofing_level.as_str()
                ),
            ));
        }
        Ok(())
    }
}

/// Inside finalize's write transaction: the asset is still active and still holds every
/// identifier, and the person still active at the address the certificate names
/// (`check_person` allowed only that address). The rows are read so that a concurrent
/// decommissioning, inventory update, leaver or mover takes its turn before or after this
/// transaction, never between the checks before signing and the commit
/// (`assets::status_for_issuance`). For a person's account, also that the account is still
/// valid: a recovery deactivates the accounts and leaves the person active, and it locks the
/// person's row before its sweep, which the person's read here waited for.
fn still_entitled(
    conn: &mut DbConnection,
    account: &Account,
    asset: Option<&Asset>,
    person: Option<&Person>,
    identifiers: &[Identifier],
) -> Result<()> {
    if let Some(asset) = asset {
        if assets::status_for_issuance(conn, &asset.id)? != Some(AssetStatus::Active) {
            return Err(Error::unauthorized(format!("asset {:?} was decommissioned during issuance", asset.name)));
        }
        let held = assets::identifiers_of(conn, &asset.id)?;
        if let Some(id) = identifiers.iter().find(|id| !held.contains(id)) {
            return Err(Error::rejected_identifier(format!(
                "{id} was taken off asset {:?} during issuance",
                asset.name
            )));
        }
    }
    if let Some(person) = person {
        match people::standing_for_issuance(conn, &person.id)? {
            Some((PersonStatus::Active, email))
                if identifiers.iter().all(|id| id.value.eq_ignore_ascii_case(&email)) => {}
            Some((PersonStatus::Active, email)) => {
                return Err(Error::unauthorized(format!(
                    "{}'s address changed to {email} during issuance",
                    person.email
                )))
            }
            Some((status, _)) => {
                return Err(Error::unauthorized(format!("{} became {} during issuance", person.email, status.as_str())))
            }
            None => return Err(Error::unauthorized(format!("{} no longer exists", person.email))),
        }
        let current = accounts::by_id(conn, account.track, &account.id)?;
        if current.as_ref().map(|a| a.status) != Some(AccountStatus::Valid) {
            return Err(Error::unauthorized("the account was deactivated during issuance"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::rows::AccountRow;
    use crate::storage::testing::{account_row, person_row};

    /// Finalize's last check for a person's account reads the account too: one a recovery
    /// deactivated while the person stays active gets no certificate.
    #[test]
    fn a_deactivated_persons_account_is_not_entitled() {
        for storage in crate::storage::testing::storages() {
            let person = person_row("p1", "pat@example.test", PersonStatus::Active);
            let account = |id: &str, status: AccountStatus| AccountRow {
                status: status.as_str().into(),
                person_id: Some("p1".into()),
                ..account_row(id, Track::Human, &format!("key-{id}"))
            };
            storage
                .write(|conn| {
                    people::insert(conn, &person)?;
                    assert!(accounts::insert_unless_key_taken(conn, &account("live", AccountStatus::Valid))?);
                    assert!(accounts::insert_unless_key_taken(conn, &account("gone", AccountStatus::Deactivated))?);
                    Ok(())
                })
                .unwrap();
            let person = storage.read(|conn| people::by_id(conn, "p1")).unwrap().unwrap();
            let names = [Identifier::new(IdentifierKind::Email, "pat@example.test")];
            let entitled = |id: &'static str| {
                let account = storage.read(|conn| accounts::by_id(conn, Track::Human, id)).unwrap().unwrap();
                storage.write(|conn| still_entitled(conn, &account, None, Some(&person), &names))
            };
            assert!(entitled("live").is_ok());
            let refused = entitled("gone").unwrap_err();
            assert_eq!(refused.kind, ErrorKind::Unauthorized);
            assert!(refused.detail.contains("deactivated"), "{}", refused.detail);
        }
    }
}
