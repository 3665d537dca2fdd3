//! Help-desk recovery of a person who lost a key or a device. An operator checks the person's
//! identity out of band and records how; the recovery then revokes the person's live
//! certificates with the reason given, deactivates their accounts and EAB keys, closes open
//! links, and mails a new one-time enrollment link and code to the person (never to the
//! operator). A high-assurance recovery waits for a second, different operator. Every step is
//! on the human chain, naming the operators, and its mail is in the outbox in the same
//! transaction.

use serde_json::json;

use super::people::{find_person, hash, new_link_secret, person_for_update, person_subject};
use super::{Ca, OutboundMail};
use crate::audit;
use crate::clock::rfc3339;
use crate::model::*;
use crate::storage::people as people_store;
use crate::storage::recoveries::{self as store, RecoveryRow};
use crate::storage::{certificates, DbConnection};
use crate::{ids, Error, Result, Track};

/// How long a recovery's link and code stay usable.
const RECOVERY_LINK_LIFETIME: i64 = 3 * 86400;
const RECOVERY_LINK_LIFETIME_TEXT: &str = "3 days";

/// The checks out of band a help-desk operator may record.
const HELPDESK_METHODS: [&str; 3] = ["in-person", "video", "manager-callback"];

/// Holders of a live certificate of this profile need a second operator to be recovered: it is
/// the profile `check_person` allows only after a help-desk check.
const HIGH_ASSURANCE_PROFILE: &str = "client-auth";

/// An evidence note longer than this is refused rather than cut.
const MAX_EVIDENCE_CHARS: usize = 2000;

struct CheckedSpec {
    reason: RevocationReason,
    method: String,
    evidence: String,
}

fn check_spec(spec: &RecoverySpec) -> Result<CheckedSpec> {
    let reason = match RevocationReason::parse(spec.reason.trim()) {
        Some(reason @ (RevocationReason::KeyCompromise | RevocationReason::Superseded)) => reason,
        _ => {
            return Err(Error::malformed(format!("reason must be keyCompromise or superseded, not {:?}", spec.reason)))
        }
    };
    let method = spec.method.trim();
    if !HELPDESK_METHODS.contains(&method) {
        return Err(Error::malformed(format!(
            "method must be in-person, video or manager-callback, not {:?}",
            spec.method
        )));
    }
    let evidence = spec.evidence.trim();
    if evidence.chars().count() < 5 {
        return Err(Error::malformed(
            "a recovery needs an evidence note of at least 5 characters: what was checked, and how",
        ));
    }
    if evidence.chars().count() > MAX_EVIDENCE_CHARS {
        return Err(Error::malformed(format!("the evidence note is longer than {MAX_EVIDENCE_CHARS} characters")));
    }
    Ok(CheckedSpec { reason, method: method.to_string(), evidence: evidence.to_string() })
}

/// A recovery of this person by id; one of someone else is not found, like one that does not
/// exist.
fn find_recovery(conn: &mut DbConnection, person: &Person, id: &str) -> Result<Recovery> {
    store::by_id(conn, id)?
        .filter(|r| r.person_id == person.id)
        .ok_or_else(|| Error::not_found(format!("no recovery {id:?} of {}", person.email)))
}

fn check_pending(recovery: &Recovery, now: i64) -> Result<()> {
    match recovery.status {
        RecoveryStatus::Completed => Err(Error::conflict(format!("recovery {} was already carried out", recovery.id))),
        RecoveryStatus::Cancelled => Err(Error::conflict(format!("recovery {} was cancelled", recovery.id))),
        RecoveryStatus::Pending if !recovery.awaits_approval(now) => Err(Error::conflict(format!(
            "recovery {} expired unapproved at {}; request a new one",
            recovery.id,
            rfc3339(recovery.approval_expires_at())
        ))),
        RecoveryStatus::Pending => Ok(()),
    }
}

/// Cancels the person's pending recovery, if there is one, with an audit event saying why
/// (`leaver`, `expired`); no mail, since what causes it mails the person itself. Returns its id.
pub(super) fn cancel_pending(
    conn: &mut DbConnection,
    person: &Person,
    actor: &str,
    because: &str,
    now: i64,
) -> Result<Option<String>> {
    let Some(pending) = store::pending_for_person(conn, &person.id)? else { return Ok(None) };
    if !store::mark_cancelled(conn, &pending.id, actor, now)? {
        return Ok(None);
    }
    audit::record(
        conn,
        Track::Human,
        now,
        actor,
        "person.recovery-cancelled",
        person_subject(&person.email),
        json!({ "recovery": pending.id, "requested_by": pending.requested_by, "because": because }),
    )?;
    Ok(Some(pending.id))
}

/// The id of the recovery that mailed the enrollment link with this token hash, if one did.
pub(super) fn recovery_of_link(conn: &mut DbConnection, token_hash: &str) -> Result<Option<String>> {
    Ok(store::by_enrollment(conn, token_hash)?.map(|r| r.id))
}

impl Ca {
    /// A help-desk operator asks to recover an active person, after checking their identity out
    /// of band. A standard recovery is carried out at once; a high-assurance one (the person
    /// holds a live `client-auth` certificate or was proofed by the help desk) waits, pending,
    /// for `approve_recovery` by another operator, and the person is told it was requested.
    pub fn request_recovery(&self, email: &str, spec: &RecoverySpec, operator: &str) -> Result<RecoveryOutcome> {
        let checked = check_spec(spec)?;
        let now = self.clock.unix();
        let outcome = self.storage.write(|conn| {
            let person = person_for_update(conn, email)?;
            if person.status != PersonStatus::Active {
                return Err(Error::conflict(format!(
                    "{email} is {}, not active: only an active person can be recovered",
                    person.status.as_str()
                )));
            }
            if let Some(pending) = store::pending_for_person(conn, &person.id)? {
                if pending.awaits_approval(now) {
                    return Err(Error::conflict(format!(
                        "recovery {} of {email} is already waiting for approval; approve or cancel it first",
                        pending.id
                    )));
                }
                cancel_pending(conn, &person, operator, "expired", now)?;
            }
            let high_assurance = person.proofing_level == ProofingLevel::Helpdesk
                || certificates::person_holds_live_profile(conn, &person.id, HIGH_ASSURANCE_PROFILE, now)?;
            let row = RecoveryRow {
                id: ids::new_id(),
                person_id: person.id.clone(),
                requested_by: operator.to_string(),
                approved_by: None,
                cancelled_by: None,
                reason: checked.reason.name().to_string(),
                method: checked.method.clone(),
                evidence: checked.evidence.clone(),
                high_assurance,
                status: RecoveryStatus::Pending.as_str().into(),
                enrollment_token_hash: None,
                created_at: now,
                completed_at: None,
                cancelled_at: None,
            };
            store::insert(conn, &row)?;
            let recovery = Recovery::try_from(row)?;
            audit::record(
                conn,
                Track::Human,
                now,
                operator,
                "person.recovery-requested",
                person_subject(email),
                json!({
                    "recovery": recovery.id, "reason": checked.reason.name(), "method": checked.method,
                    "evidence": checked.evidence, "high_assurance": high_assurance,
                }),
            )?;
            if !high_assurance {
                return self.carry_out(conn, &person, recovery, operator, None, now);
            }
            let mail = OutboundMail::notification(
                Track::Human,
                email.to_string(),
                "dualca: a recovery was requested for you",
                &[
                    &format!("Hello {},", person.display_name),
                    &format!(
                        "the help desk asked to recover your access after a check of your identity ({}). A \
                         second operator must approve it; then your certificates are revoked and a new \
                         enrollment link comes by mail.",
                        checked.method
                    ),
                    "If you did not ask the help desk for this, tell your manager or the help desk at once.",
                ],
            );
            super::outbox::enqueue(conn, &mail, now)?;
            Ok(RecoveryOutcome {
                recovery,
                revoked_certificates: Vec::new(),
                deactivated_accounts: Vec::new(),
                link_expires_at: None,
            })
        })?;
        self.recovery_committed(&outcome);
        Ok(outcome)
    }

    /// The second operator approves a pending high-assurance recovery, which is then carried out
    /// in the same transaction. The operator who requested it may not approve it (the two-person
    /// rule); the refusal is audited.
    pub fn approve_recovery(&self, email: &str, id: &str, operator: &str) -> Result<RecoveryOutcome> {
        let now = self.clock.unix();
        let outcome = self.storage.write(|conn| {
            let person = person_for_update(conn, email)?;
            let recovery = find_recovery(conn, &person, id)?;
            check_pending(&recovery, now)?;
            if same_operator(&recovery.requested_by, operator) {
                // Committed on its own, with nothing else: the refusal is on the chain.
                audit::record(
                    conn,
                    Track::Human,
                    now,
                    operator,
                    "person.recovery-approval-refused",
                    person_subject(email),
                    json!({ "recovery": recovery.id, "why": "the operator who requested it may not approve it" }),
                )?;
                return Ok(Err(Error::unauthorized(format!(
                    "recovery {id} was requested by {}; the two-person rule needs another operator to approve it",
                    recovery.requested_by
                ))));
            }
            if person.status != PersonStatus::Active {
                return Err(Error::conflict(format!(
                    "{email} is {}, not active: only an active person can be recovered",
                    person.status.as_str()
                )));
            }
            audit::record(
                conn,
                Track::Human,
                now,
                operator,
                "person.recovery-approved",
                person_subject(email),
                json!({ "recovery": recovery.id, "requested_by": recovery.requested_by }),
            )?;
            self.carry_out(conn, &person, recovery, operator, Some(operator), now).map(Ok)
        })??;
        self.recovery_committed(&outcome);
        Ok(outcome)
    }

    /// Withdraws a pending recovery; any operator who may manage people may, the requester
    /// included. The person is told nothing was changed.
    pub fn cancel_recovery(&self, email: &str, id: &str, operator: &str) -> Result<Recovery> {
        let now = self.clock.unix();
        self.storage.write(|conn| {
            let person = person_for_update(conn, email)?;
            let recovery = find_recovery(conn, &person, id)?;
            if recovery.status != RecoveryStatus::Pending || !store::mark_cancelled(conn, id, operator, now)? {
                return Err(Error::conflict(format!("recovery {id} is {}, not pending", recovery.status.as_str())));
            }
            audit::record(
                conn,
                Track::Human,
                now,
                operator,
                "person.recovery-cancelled",
                person_subject(email),
                json!({ "recovery": id, "requested_by": recovery.requested_by, "because": "cancelled" }),
            )?;
            let mail = OutboundMail::notification(
                Track::Human,
                email.to_string(),
                "dualca: the recovery request was cancelled",
                &["The help desk cancelled the request to recover your access; nothing was changed."],
            );
            super::outbox::enqueue(conn, &mail, now)?;
            store::by_id(conn, id)?.ok_or_else(|| Error::internal("a cancelled recovery vanished"))
        })
    }

    /// A person's recoveries, newest first.
    pub fn recoveries(&self, email: &str) -> Result<Vec<Recovery>> {
        self.storage.read(|conn| {
            let person = find_person(conn, email)?;
            store::for_person(conn, &person.id)
        })
    }

    /// Carries out a recovery inside the caller's transaction: revokes, deactivates, closes the
    /// old links, makes the new one, records the check as a proofing event, and mails the
    /// person the link and code and the manager a notice.
    fn carry_out(
        &self,
        conn: &mut DbConnection,
        person: &Person,
        recovery: Recovery,
        executor: &str,
        approved_by: Option<&str>,
        now: i64,
    ) -> Result<RecoveryOutcome> {
        let email = person.email.as_str();
        let subject = person_subject(email);
        let reason = recovery.reason;
        // A high-assurance recovery reaches here only approved by a second operator.
        let grants = if recovery.high_assurance && approved_by.is_some() {
            ProofingLevel::Helpdesk
        } else {
            ProofingLevel::Email
        };
        let cut = super::people::cut_off(
            conn,
            person,
            reason,
            executor,
            "recovery",
            json!({ "recovery": recovery.id }),
            now,
        )?;
        let (serials, deactivated, keys) = (cut.serials, cut.accounts, cut.eab_keys);
        people_store::close_enrollments(conn, &person.id, now)?;
        let (token, code) = new_link_secret();
        let token_hash = hash(&token);
        let link_expires_at = now + RECOVERY_LINK_LIFETIME;
        people_store::insert_enrollment(conn, &token_hash, &person.id, &hash(&code), grants, now, link_expires_at)?;
        if !store::mark_completed(conn, &recovery.id, approved_by, &token_hash, now)? {
            return Err(Error::conflict(format!("recovery {} is no longer pending", recovery.id)));
        }
        let checked_by = match approved_by {
            Some(approver) => format!("{}, approved by {approver}", recovery.requested_by),
            None => recovery.requested_by.clone(),
        };
        people_store::add_proofing(conn, &person.id, grants, &recovery.method, &recovery.evidence, &checked_by, now)?;
        audit::record(
            conn,
            Track::Human,
            now,
            executor,
            "person.recovered",
            subject,
            json!({
                "recovery": recovery.id, "reason": reason.name(), "method": recovery.method,
                "requested_by": recovery.requested_by, "approved_by": approved_by,
                "high_assurance": recovery.high_assurance, "grants_level": grants.as_str(),
                "revoked_certificates": serials, "deactivated_accounts": deactivated, "eab_keys_revoked": keys,
                "link_expires_at": rfc3339(link_expires_at),
            }),
        )?;

        let url = format!("{}/enroll/{token}", self.public_url());
        let revoked = if serials.is_empty() {
            "You had no valid certificates to revoke.".to_string()
        } else {
            format!(
                "These certificates were revoked ({}): {}.",
                reason.name(),
                serials.iter().map(|s| format!("serial {s}")).collect::<Vec<_>>().join(", ")
            )
        };
        let link = OutboundMail::notification(
            Track::Human,
            email.to_string(),
            "dualca: recover your certificates",
            &[
                &format!("Hello {},", person.display_name),
                &format!(
                    "the help desk recovered your access after a check of your identity ({}). Your ACME \
                     accounts and credentials no longer work. {revoked}",
                    recovery.method
                ),
                &format!(
                    "Open {url} and enter the code {code} to get new credentials. The link works once and \
                     expires in {RECOVERY_LINK_LIFETIME_TEXT}."
                ),
                "If you did not ask the help desk for this, tell your manager or the help desk at once.",
            ],
        );
        let operators = match approved_by {
            Some(approver) => format!("requested by {}, approved by {approver}", recovery.requested_by),
            None => format!("by {}", recovery.requested_by),
        };
        let to_manager = OutboundMail::notification(
            Track::Human,
            person.manager_email.clone(),
            format!("dualca: the help desk recovered {}", person.display_name),
            &[
                &format!(
                    "{} <{email}> was recovered by the help desk ({}; {operators}): {} certificate(s) revoked, \
                     their ACME accounts deactivated, and a new enrollment link mailed to them.",
                    person.display_name,
                    recovery.method,
                    serials.len()
                ),
                "If this is unexpected, tell the help desk.",
            ],
        );
        super::outbox::enqueue(conn, &link, now)?;
        super::outbox::enqueue(conn, &to_manager, now)?;
        let recovery = store::by_id(conn, &recovery.id)?.ok_or_else(|| Error::internal("a recovery vanished"))?;
        Ok(RecoveryOutcome {
            recovery,
            revoked_certificates: serials,
            deactivated_accounts: deactivated,
            link_expires_at: Some(link_expires_at),
        })
    }

    /// After the transaction commits: OCSP and the CRL learn of the revocations.
    fn recovery_committed(&self, outcome: &RecoveryOutcome) {
        for serial in &outcome.revoked_certificates {
            self.revocation_committed(Track::Human, serial);
        }
    }
}

/// Whether two actors are one operator for the two-person rule: the same actor, or the same
/// name behind the API's `admin:` and the command line's `operator:` prefixes, case aside. One
/// person may hold both an admin token and a shell on the server, and requesting through one
/// and approving through the other must not count as two people.
fn same_operator(a: &str, b: &str) -> bool {
    fn name(actor: &str) -> &str {
        actor.strip_prefix("admin:").or_else(|| actor.strip_prefix("operator:")).unwrap_or(actor)
    }
    name(a).eq_ignore_ascii_case(name(b))
}

#[cfg(test)]
mod tests {
    use super::same_operator;

    #[test]
    fn one_name_through_the_api_and_the_command_line_is_one_operator() {
        assert!(same_operator("admin:alice", "admin:alice"));
        assert!(same_operator("operator:carol", "admin:Carol"));
        assert!(same_operator("admin:carol", "operator:carol"));
        assert!(!same_operator("admin:alice", "admin:bob"));
        assert!(!same_operator("operator:carol", "operator:dave"));
        assert!(!same_operator("admin:alice", "admin:alice2"));
    }
}
