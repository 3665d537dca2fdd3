//! The human track's people: HR events (joiner, mover, leaver), enrollment by a one-time link
//! and code that proofs control of the mailbox, help-desk proofing, and the EAB credentials
//! that bind a person's ACME accounts. Every event goes on the human chain, and every mail it
//! causes goes to the outbox in the same transaction.

use serde_json::json;

use super::{Ca, OutboundMail};
use crate::audit;
use crate::model::*;
use crate::storage::assets::{self as eab_store, EabKeyRow};
use crate::storage::people::{self as store, PersonRow};
use crate::storage::{accounts, certificates};
use crate::{ids, Error, Result, Track};

/// How long an invite's link and code stay usable.
const ENROLLMENT_LIFETIME: i64 = 7 * 86400;
/// Wrong codes an enrollment link tolerates before it closes.
const ENROLLMENT_ATTEMPTS: i64 = 5;
/// How long the EAB credentials handed out at enrollment stay usable.
const PERSON_EAB_LIFETIME: i64 = 30 * 86400;

pub(super) fn hash(text: &str) -> String {
    ids::hex(&ids::sha256(text.as_bytes()))
}

/// The person at `email`, with their row locked for the rest of the write transaction
/// (`lock_by_email`): every change that reads a person to write them back, or to sweep what
/// they hold, takes the row first, so that enrollments, proofing, moves, leaves and recoveries
/// of one person take turns, each reading what the one before committed.
pub(super) fn person_for_update(conn: &mut crate::storage::DbConnection, email: &str) -> Result<Person> {
    store::lock_by_email(conn, email)?;
    find_person(conn, email)
}

/// The person at `email`, or not found.
pub(super) fn find_person(conn: &mut crate::storage::DbConnection, email: &str) -> Result<Person> {
    store::by_email(conn, email)?.ok_or_else(|| Error::not_found(format!("no person {email:?}")))
}

pub(super) fn person_subject(email: &str) -> String {
    format!("person:{email}")
}

/// A one-time link token and its 8-digit code, as an invite or a recovery mails them.
pub(super) fn new_link_secret() -> (String, String) {
    let token = ids::new_token();
    let code = format!("{:08}", u64::from_be_bytes(ids::random_bytes::<8>()) % 100_000_000);
    (token, code)
}

fn check_address(field: &str, value: &str) -> Result<()> {
    super::accounts::check_contacts(&[format!("mailto:{value}")])
        .map_err(|_| Error::malformed(format!("{field} {value:?} is not an email address")))
}

impl Ca {
    /// Joiner: creates the person, invited, and mails them a one-time enrollment link and code.
    pub fn person_joins(&self, spec: &JoinerSpec, actor: &str) -> Result<Invitation> {
        check_address("email", &spec.email)?;
        check_address("manager_email", &spec.manager_email)?;
        if spec.display_name.trim().is_empty() || spec.employee_id.trim().is_empty() {
            return Err(Error::malformed("a joiner needs display_name and employee_id"));
        }
        let now = self.clock.unix();
        let (token, code) = new_link_secret();
        let url = format!("{}/enroll/{token}", self.public_url());
        let person = self.storage.write(|conn| {
            if store::by_email(conn, &spec.email)?.is_some() {
                return Err(Error::conflict(format!("{} is already registered", spec.email)));
            }
            if store::by_employee_id(conn, &spec.employee_id)?.is_some() {
                return Err(Error::conflict(format!("employee id {} is already registered", spec.employee_id)));
            }
            let row = PersonRow {
                id: ids::new_id(),
                email: spec.email.clone(),
                display_name: spec.display_name.clone(),
                employee_id: spec.employee_id.clone(),
                manager_email: spec.manager_email.clone(),
                status: PersonStatus::Invited.as_str().into(),
                proofing_level: ProofingLevel::None.as_str().into(),
                created_at: now,
                updated_at: now,
                left_at: None,
            };
            store::insert(conn, &row)?;
            store::insert_enrollment(
                conn,
                &hash(&token),
                &row.id,
                &hash(&code),
                ProofingLevel::Email,
                now,
                now + ENROLLMENT_LIFETIME,
            )?;
            audit::record(conn, Track::Human,
                    now,
                    actor,
                    "person.joined",
                    person_subject(&spec.email),
                    json!({ "display_name": spec.display_name, "employee_id": spec.employee_id, "manager": spec.manager_email }))?;
            let invite = OutboundMail::notification(
                Track::Human,
                spec.email.clone(),
                "dualca: enroll for your certificates",
                &[
                    &format!("Hello {},", spec.display_name),
                    &format!("open {url} and enter the code {code} to enroll. The link works once and expires in 7 days."),
                    "If you did not expect this mail, tell your manager or the help desk.",
                ],
            );
            super::outbox::enqueue(conn, &invite, now)?;
            Person::try_from(row)
        })?;
        Ok(Invitation { person, enrollment_url: url, code, expires_at: now + ENROLLMENT_LIFETIME })
    }

    /// Completes an enrollment: the code proves control of the mailbox, the person gets the
    /// proofing level the link grants (email for an invite; what its recovery grants for a
    /// recovery link) and EAB credentials for the human directory, shown this once.
    pub fn complete_enrollment(&self, token: &str, code: &str) -> Result<(Person, EabCredentials)> {
        let now = self.clock.unix();
        let token_hash = hash(token);
        let refused = || Error::unauthorized("this enrollment link or code is not valid");
        let key = ids::random_bytes::<32>();
        let sealed = self.seal(&key)?;
        let kid = format!("eab-{}", ids::new_id());
        let outcome = self.storage.write(|conn| {
            let Some((person_id, code_hash, attempts, expires_at, used_at, grants)) =
                store::enrollment(conn, &token_hash)?
            else {
                return Ok(Err(refused()));
            };
            if used_at.is_some() || expires_at <= now || attempts >= ENROLLMENT_ATTEMPTS {
                return Ok(Err(refused()));
            }
            // The person is written back whole below: a leave, a move or a recovery under way is
            // waited for. Their row first, then the link's, in the order those changes take them.
            store::lock_by_id(conn, &person_id)?;
            // Every try takes one of the link's attempts before its code is compared, by
            // compare-and-set: concurrent guesses (on PostgreSQL, each of which read the count
            // above before the others wrote it) cannot compare more codes than the limit allows.
            // A wrong code's try commits with the refusal: guessing closes the link.
            if !store::take_attempt(conn, &token_hash, ENROLLMENT_ATTEMPTS)? || hash(code.trim()) != code_hash {
                return Ok(Err(refused()));
            }
            let person =
                store::by_id(conn, &person_id)?.ok_or_else(|| Error::internal("enrollment of a missing person"))?;
            if matches!(person.status, PersonStatus::Left | PersonStatus::Suspended) {
                return Ok(Err(refused()));
            }
            // The link works once: another completion, or a leave or recovery that closed it
            // after it was read above, wins.
            if !store::mark_enrollment_used(conn, &token_hash, now)? {
                return Ok(Err(refused()));
            }
            let grants = ProofingLevel::parse(&grants)
                .ok_or_else(|| Error::internal(format!("enrollment grants an unknown level {grants:?}")))?;
            let recovery = super::recovery::recovery_of_link(conn, &token_hash)?;
            let level = if person.proofing_level.rank() >= grants.rank() { person.proofing_level } else { grants };
            let row = PersonRow {
                id: person.id.clone(),
                email: person.email.clone(),
                display_name: person.display_name.clone(),
                employee_id: person.employee_id.clone(),
                manager_email: person.manager_email.clone(),
                status: PersonStatus::Active.as_str().into(),
                proofing_level: level.as_str().into(),
                created_at: person.created_at,
                updated_at: now,
                left_at: None,
            };
            store::update(conn, &row)?;
            let (method, evidence) = match &recovery {
                Some(id) => ("recovery-link", format!("recovery code entered (recovery {id})")),
                None => ("email-link", "enrollment code entered".to_string()),
            };
            store::add_proofing(conn, &person.id, grants, method, &evidence, "self", now)?;
            eab_store::insert_eab(
                conn,
                &EabKeyRow {
                    kid: kid.clone(),
                    track: Track::Human.as_str().into(),
                    asset_id: None,
                    person_id: Some(person.id.clone()),
                    sealed_key: sealed.clone(),
                    single_use: false,
                    created_at: now,
                    expires_at: now + PERSON_EAB_LIFETIME,
                    used_at: None,
                    revoked_at: None,
                },
            )?;
            let subject = person_subject(&person.email);
            let mut details = json!({ "level": grants.as_str(), "method": method });
            if let Some(id) = &recovery {
                details["recovery"] = json!(id);
            }
            audit::record(conn, Track::Human, now, subject.clone(), "person.proofed", subject.clone(), details)?;
            audit::record(
                conn,
                Track::Human,
                now,
                subject,
                "eab.created",
                person_subject(&person.email),
                json!({ "kid": kid }),
            )?;
            let done = match recovery {
                Some(_) => OutboundMail::notification(
                    Track::Human,
                    person.email.clone(),
                    "dualca: recovery completed",
                    &[
                        "Your recovery is complete: you have new credentials and can request certificates again.",
                        "If this was not you, tell the help desk at once.",
                    ],
                ),
                None => OutboundMail::notification(
                    Track::Human,
                    person.email.clone(),
                    "dualca: enrollment completed",
                    &[
                        "Your enrollment is complete: you can now request certificates for your address.",
                        "If this was not you, tell the help desk at once.",
                    ],
                ),
            };
            super::outbox::enqueue(conn, &done, now)?;
            Ok(Ok(Person::try_from(row)?))
        })?;
        let person = outcome?;
        Ok((
            person,
            EabCredentials {
                kid,
                hmac_key_b64: ids::b64url(&key),
                expires_at: now + PERSON_EAB_LIFETIME,
                single_use: false,
            },
        ))
    }

    /// A help-desk operator raises the proofing level after a check out of band.
    pub fn proof_by_helpdesk(&self, email: &str, method: &str, evidence: &str, operator: &str) -> Result<Person> {
        if !matches!(method, "in-person" | "video" | "manager-callback") {
            return Err(Error::malformed("method must be in-person, video or manager-callback"));
        }
        if evidence.trim().len() < 5 {
            return Err(Error::malformed("a help-desk proofing needs an evidence note"));
        }
        let now = self.clock.unix();
        self.storage.write(|conn| {
            let person = person_for_update(conn, email)?;
            if person.status != PersonStatus::Active {
                return Err(Error::conflict(format!("{email} is {}, not active", person.status.as_str())));
            }
            let mut row = person_row(&person, now);
            row.proofing_level = ProofingLevel::Helpdesk.as_str().into();
            store::update(conn, &row)?;
            store::add_proofing(conn, &person.id, ProofingLevel::Helpdesk, method, evidence, operator, now)?;
            audit::record(
                conn,
                Track::Human,
                now,
                operator,
                "person.proofed",
                person_subject(email),
                json!({ "level": "helpdesk", "method": method, "evidence": evidence }),
            )?;
            let mail = OutboundMail::notification(
                Track::Human,
                email.to_string(),
                "dualca: your identity was confirmed by the help desk",
                &[
                    &format!("The help desk confirmed your identity ({method})."),
                    "If this was not you, tell your manager at once.",
                ],
            );
            super::outbox::enqueue(conn, &mail, now)?;
            Person::try_from(row)
        })
    }

    /// Mover: a new address or manager, audited.
    pub fn person_moves(
        &self,
        email: &str,
        new_email: Option<&str>,
        new_manager: Option<&str>,
        actor: &str,
    ) -> Result<Person> {
        if let Some(e) = new_email {
            check_address("email", e)?;
        }
        if let Some(m) = new_manager {
            check_address("manager_email", m)?;
        }
        let now = self.clock.unix();
        self.storage.write(|conn| {
            let person = person_for_update(conn, email)?;
            if person.status == PersonStatus::Left {
                return Err(Error::conflict(format!("{email} has left")));
            }
            if let Some(e) = new_email {
                if e != email && store::by_email(conn, e)?.is_some() {
                    return Err(Error::conflict(format!("{e} is already registered")));
                }
            }
            let mut row = person_row(&person, now);
            if let Some(e) = new_email {
                row.email = e.to_string();
            }
            if let Some(m) = new_manager {
                row.manager_email = m.to_string();
            }
            store::update(conn, &row)?;
            audit::record(conn, Track::Human,
                    now,
                    actor,
                    "person.moved",
                    person_subject(&row.email),
                    json!({ "from": {"email": person.email, "manager": person.manager_email}, "to": {"email": row.email, "manager": row.manager_email} }))?;
            Person::try_from(row)
        })
    }

    /// Leaver: revokes every certificate (affiliationChanged), deactivates the accounts and
    /// EAB keys, closes open enrollments, and mails the person and their manager; one
    /// transaction. Returns the revoked serials.
    pub fn person_leaves(&self, email: &str, actor: &str) -> Result<Vec<String>> {
        let now = self.clock.unix();
        let reason = RevocationReason::AffiliationChanged;
        let serials = self.storage.write(|conn| {
            let person = person_for_update(conn, email)?;
            if person.status == PersonStatus::Left {
                return Err(Error::conflict(format!("{email} has already left")));
            }
            let mut row = person_row(&person, now);
            row.status = PersonStatus::Left.as_str().into();
            row.left_at = Some(now);
            store::update(conn, &row)?;
            store::close_enrollments(conn, &person.id, now)?;
            let subject = person_subject(email);
            audit::record(
                conn,
                Track::Human,
                now,
                actor,
                "person.left",
                subject.clone(),
                json!({ "manager": person.manager_email }),
            )?;
            super::recovery::cancel_pending(conn, &person, actor, "leaver", now)?;
            let cut = cut_off(conn, &person, reason, actor, "leaver", json!({}), now)?;
            let serials = cut.serials;
            let to_person = OutboundMail::notification(
                Track::Human,
                email.to_string(),
                "dualca: your certificates were revoked",
                &[&format!("You have left; {} certificate(s) issued to {email} were revoked.", serials.len())],
            );
            let to_manager = OutboundMail::notification(
                Track::Human,
                person.manager_email.clone(),
                format!("dualca: {} has left", person.display_name),
                &[&format!(
                    "{} <{email}> has left. {} certificate(s) were revoked and their ACME accounts deactivated.",
                    person.display_name,
                    serials.len()
                )],
            );
            super::outbox::enqueue(conn, &to_person, now)?;
            super::outbox::enqueue(conn, &to_manager, now)?;
            Ok(serials)
        })?;
        for serial in &serials {
            self.revocation_committed(Track::Human, serial);
        }
        Ok(serials)
    }

    pub fn person(&self, email: &str) -> Result<Person> {
        self.storage.read(|conn| find_person(conn, email))
    }

    pub fn person_by_id(&self, id: &str) -> Result<Person> {
        self.storage
            .read(|conn| store::by_id(conn, id))?
            .ok_or_else(|| Error::not_found(format!("no person with id {id:?}")))
    }

    pub fn people(&self, status: Option<PersonStatus>) -> Result<Vec<Person>> {
        self.storage.read(|conn| store::list(conn, status))
    }

    /// (level, method, evidence, operator, at), oldest first.
    pub fn proofing_history(&self, email: &str) -> Result<Vec<crate::storage::people::ProofingRecord>> {
        let person = self.person(email)?;
        self.storage.read(|conn| store::proofing_history(conn, &person.id))
    }
}

pub(super) fn person_row(person: &Person, now: i64) -> PersonRow {
    PersonRow {
        id: person.id.clone(),
        email: person.email.clone(),
        display_name: person.display_name.clone(),
        employee_id: person.employee_id.clone(),
        manager_email: person.manager_email.clone(),
        status: person.status.as_str().into(),
        proofing_level: person.proofing_level.as_str().into(),
        created_at: person.created_at,
        updated_at: now,
        left_at: person.left_at,
    }
}

/// Days before notAfter at which a person is reminded, most distant first.
const REMINDER_DAYS: [i64; 3] = [30, 7, 1];

impl Ca {
    /// Expiry reminders for people's certificates, 30, 7 and 1 days before notAfter. Each is
    /// sent once, even across restarts (a dedupe key per certificate and threshold); when a run
    /// comes late, only the nearest threshold is sent. Returns how many went out.
    pub fn send_expiry_reminders(&self) -> Result<usize> {
        let now = self.clock.unix();
        // Only certificates within the furthest reminder of their expiry are looked at.
        let until = now + REMINDER_DAYS[0] * 86400;
        let live = self.storage.read(|conn| certificates::live_person_certificates(conn, now, until))?;
        let mut sent = 0;
        for cert in live {
            let Some(person_id) = &cert.person_id else { continue };
            let left = cert.not_after - now;
            let Some(days) = REMINDER_DAYS.iter().rev().find(|d| left <= *d * 86400).copied() else { continue };
            let person = self.person_by_id(person_id)?;
            if person.status != PersonStatus::Active {
                continue;
            }
            let names: Vec<String> = cert.identifiers.iter().map(|i| i.value.clone()).collect();
            let mail = OutboundMail::notification(
                Track::Human,
                person.email.clone(),
                format!(
                    "dualca: your {} certificate expires in {days} day{}",
                    cert.profile,
                    if days == 1 { "" } else { "s" }
                ),
                &[
                    &format!(
                        "Your {} certificate for {} (serial {}) expires at {}.",
                        cert.profile,
                        names.join(", "),
                        cert.serial,
                        crate::clock::rfc3339(cert.not_after)
                    ),
                    "Renew it before then with your ACME client.",
                ],
            )
            .with_dedupe_key(format!("expiry:{}:{days}d", cert.serial), cert.not_after);
            if self.storage.write(|conn| super::outbox::enqueue(conn, &mail, now))? {
                sent += 1;
            }
        }
        Ok(sent)
    }
}

/// What cutting a person off did.
pub(super) struct CutOff {
    pub serials: Vec<String>,
    pub accounts: Vec<String>,
    pub eab_keys: usize,
}

/// Revokes every live certificate of the person with `reason`, deactivates every account bound
/// to them and revokes their EAB keys, each step audited by `actor` with `context`'s members in
/// its details; inside the caller's transaction. The leaver and the recovery both end here.
pub(super) fn cut_off(
    conn: &mut crate::storage::DbConnection,
    person: &Person,
    reason: RevocationReason,
    actor: &str,
    because: &str,
    context: serde_json::Value,
    now: i64,
) -> Result<CutOff> {
    let email = person.email.as_str();
    let with_context = |mut details: serde_json::Value| {
        if let (Some(target), Some(extra)) = (details.as_object_mut(), context.as_object()) {
            target.extend(extra.clone());
        }
        details
    };
    let serials = certificates::live_for_person(conn, &person.id, now)?;
    for serial in &serials {
        certificates::revoke(conn, serial, reason as u8, now)?;
        let details = with_context(json!({ "reason": reason.name(), "person": email }));
        audit::record(conn, Track::Human, now, actor, "certificate.revoked", format!("certificate:{serial}"), details)?;
    }
    let accounts = accounts::deactivate_for_person(conn, &person.id, now)?;
    for account in &accounts {
        let details = with_context(json!({ "person": email, "because": because }));
        audit::record(conn, Track::Human, now, actor, "account.deactivated", format!("account:{account}"), details)?;
    }
    let eab_keys = eab_store::revoke_person_eab_keys(conn, &person.id, now)?;
    if eab_keys > 0 {
        let details = with_context(json!({ "keys": eab_keys }));
        audit::record(conn, Track::Human, now, actor, "eab.revoked", person_subject(email), details)?;
    }
    Ok(CutOff { serials, accounts, eab_keys })
}
