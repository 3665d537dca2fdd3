//! RFC 8823 `email-reply-00`: the challenge mail, sent through the outbox when an order names
//! an email address, and the reply, which the SMTP intake (in `dualca-acme`) parses and hands
//! to `Ca::record_email_reply`. The intake says how the reply was authenticated; whether that
//! is enough, and whether the reply answers its challenge, is decided here.

use serde_json::json;

use super::orders::{load_challenge, record_validation_outcome};
use super::{Ca, OutboundMail};
use crate::model::{Authorization, Challenge, ChallengeKind, ChallengeStatus, StoredProblem};
use crate::storage::email_challenges::{self as store, EmailChallengeRow};
use crate::storage::{accounts, certificates, DbConnection};
use crate::{audit, ids, Error, ErrorKind, Result, Track};

/// The `Auto-Submitted` value RFC 8823 §3.1 gives challenge mails.
pub const AUTO_SUBMITTED_ACME: &str = "auto-generated; type=acme";

#[derive(Debug, Clone)]
pub struct EmailReplySettings {
    /// The address challenge mails come from and replies are read at (the challenge's
    /// `from`).
    pub address: String,
    /// Development only: count replies that carry neither a trusted DKIM pass nor a valid
    /// S/MIME signature.
    pub accept_unauthenticated: bool,
}

impl Default for EmailReplySettings {
    fn default() -> Self {
        EmailReplySettings { address: "dualca@localhost".into(), accept_unauthenticated: false }
    }
}

/// How the intake found a reply to be authenticated.
#[derive(Debug, Clone)]
pub enum ReplyAuthentication {
    /// A trusted relay's Authentication-Results header says DKIM passed for these signing
    /// domains.
    Dkim { authserv_id: String, domains: Vec<String> },
    /// An S/MIME signature verified up to a trust anchor; the signer's certificate (DER).
    Smime { signer_der: Vec<u8> },
    /// Neither; why not.
    None { why: String },
}

impl ReplyAuthentication {
    fn describe(&self) -> String {
        match self {
            ReplyAuthentication::Dkim { authserv_id, domains } => format!("dkim:{}@{authserv_id}", domains.join(",")),
            ReplyAuthentication::Smime { .. } => "smime".into(),
            ReplyAuthentication::None { .. } => "none".into(),
        }
    }
}

/// A reply as the intake parsed it.
#[derive(Debug, Clone)]
pub struct EmailReply {
    /// The address of the From header.
    pub from: String,
    pub subject: String,
    pub in_reply_to: Option<String>,
    /// The text between `-----BEGIN ACME RESPONSE-----` and `-----END ACME RESPONSE-----`,
    /// whitespace removed; None when the body has no such block.
    pub response: Option<String>,
    pub authentication: ReplyAuthentication,
}

/// The token-part1 a subject carries: `ACME: <token-part1>`, after any `Re:` prefixes.
pub fn subject_token(subject: &str) -> Option<&str> {
    let mut rest = subject.trim();
    while rest.len() >= 3 && rest[..3].eq_ignore_ascii_case("re:") {
        rest = rest[3..].trim_start();
    }
    let token = rest.strip_prefix("ACME:")?.trim();
    let well_formed = !token.is_empty() && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then_some(token)
}

/// RFC 8823 §3.2: base64url(SHA-256(token-part1 || token-part2 || "." || thumbprint)).
pub fn expected_response(token_part1: &str, token_part2: &str, thumbprint: &str) -> String {
    ids::b64url(&ids::sha256(format!("{token_part1}{token_part2}.{thumbprint}").as_bytes()))
}

fn same_address(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
}

fn problem(kind: ErrorKind, detail: impl Into<String>) -> StoredProblem {
    StoredProblem { kind, detail: detail.into() }
}

impl Ca {
    pub fn email_reply_address(&self) -> &str {
        &self.email_reply.address
    }

    /// Writes the challenge mail of a new email-reply-00 challenge, inside new_order's
    /// transaction: its subject carries token-part1, which is stored here and nowhere else.
    pub(super) fn create_email_challenge(
        &self,
        conn: &mut DbConnection,
        challenge_id: &str,
        recipient: &str,
        now: i64,
    ) -> Result<()> {
        let token_part1 = ids::new_token();
        let outbox_id = ids::new_id();
        let mut mail = OutboundMail::notification(
            Track::Human,
            recipient,
            format!("ACME: {token_part1}"),
            &[
                "This message proves that you control this mailbox, for a certificate that names it (RFC 8823).",
                "If you are enrolling with `dualca enroll`, give it this message's subject line when it asks. \
                 Other ACME clients answer it themselves.",
                "If you did not ask for a certificate, do not answer, and tell the help desk.",
            ],
        )
        // A challenge id is never used again: the key only guards this one enqueue.
        .with_dedupe_key(format!("acme-challenge:{challenge_id}"), now);
        mail.sender = Some(self.email_reply.address.clone());
        mail.auto_submitted = Some(AUTO_SUBMITTED_ACME.into());
        mail.id = Some(outbox_id.clone());
        super::outbox::enqueue(conn, &mail, now)?;
        store::insert(
            conn,
            &EmailChallengeRow {
                challenge_id: challenge_id.to_string(),
                token_part1,
                recipient: recipient.to_string(),
                outbox_id,
                created_at: now,
                reply_at: None,
                reply_error: None,
            },
        )
    }

    /// After begin_validation moved an email-reply-00 challenge to processing: a reply that
    /// came first decides it now; otherwise it waits for one (`record_email_reply`).
    pub(super) fn settle_email_challenge(
        &self,
        conn: &mut DbConnection,
        challenge: &Challenge,
        authz: &Authorization,
        now: i64,
    ) -> Result<Option<Challenge>> {
        let row = store::by_challenge(conn, &challenge.id)?.ok_or_else(|| {
            Error::internal(format!("email-reply-00 challenge {} has no challenge mail", challenge.id))
        })?;
        match row.recorded_reply()? {
            None => Ok(None),
            Some(outcome) => record_validation_outcome(
                conn,
                Track::Human,
                challenge,
                &[ChallengeStatus::Processing],
                authz,
                &outcome,
                now,
            ),
        }
    }

    /// Takes a reply from the SMTP intake. `Err` means it answers no open challenge (no
    /// matching subject, or the challenge is settled): nothing changes. `Ok` carries the
    /// reply's verdict, which is recorded on the challenge: at once when the client has
    /// already asked for validation, else for when it does.
    pub fn record_email_reply(&self, reply: &EmailReply) -> Result<std::result::Result<(), StoredProblem>> {
        let token_part1 = subject_token(&reply.subject).ok_or_else(|| {
            Error::not_found("the subject is not \"ACME: <token>\": this mailbox takes only ACME replies")
        })?;
        let now = self.clock.unix();
        self.storage.write(|conn| {
            let challenge_id = store::by_token_part1(conn, token_part1)?
                .ok_or_else(|| Error::not_found("no ACME challenge mail had this subject"))?
                .challenge_id;
            // Taken before the challenge is read, as `begin_email_validation` takes it (`lock`).
            store::lock(conn, &challenge_id)?;
            let row = store::by_challenge(conn, &challenge_id)?
                .ok_or_else(|| Error::internal(format!("the challenge mail of {challenge_id} vanished")))?;
            let (challenge, authz) = load_challenge(conn, Track::Human, &challenge_id, now)?;
            if challenge.kind != ChallengeKind::EmailReply00 {
                return Err(Error::internal(format!(
                    "challenge {} has a mail but is {}",
                    challenge.id,
                    challenge.kind.as_str()
                )));
            }
            if !matches!(challenge.status, ChallengeStatus::Pending | ChallengeStatus::Processing) {
                return Err(Error::conflict(format!("the challenge is already {}", challenge.status.as_str())));
            }
            if authz.status != crate::model::AuthzStatus::Pending {
                return Err(Error::conflict(format!("the authorization is {}", authz.status.as_str())));
            }
            let account = accounts::by_id(conn, Track::Human, &authz.account_id)?
                .ok_or_else(|| Error::internal("the challenge's account is gone"))?;
            let verdict = self.judge_reply(conn, reply, &row, &challenge, &account.key_thumbprint)?;
            if challenge.status == ChallengeStatus::Processing {
                record_validation_outcome(
                    conn,
                    Track::Human,
                    &challenge,
                    &[ChallengeStatus::Processing],
                    &authz,
                    &verdict,
                    now,
                )?;
            } else {
                store::record_reply(conn, &challenge.id, now, &verdict)?;
            }
            let mut details = json!({
                "identifier": authz.identifier.to_string(),
                "from": reply.from,
                "authentication": reply.authentication.describe(),
            });
            if let Err(p) = &verdict {
                details["error"] = json!(p.kind.name());
                details["detail"] = json!(p.detail);
            }
            audit::record(
                conn,
                Track::Human,
                now,
                "system",
                "challenge.reply-received",
                format!("challenge:{}", challenge.id),
                details,
            )?;
            Ok(verdict)
        })
    }

    /// Whether a reply answers its challenge: from the address the challenge went to,
    /// authenticated, in reply to the challenge mail, with the right digest.
    fn judge_reply(
        &self,
        conn: &mut DbConnection,
        reply: &EmailReply,
        row: &EmailChallengeRow,
        challenge: &Challenge,
        thumbprint: &str,
    ) -> Result<std::result::Result<(), StoredProblem>> {
        if !same_address(&reply.from, &row.recipient) {
            return Ok(Err(problem(
                ErrorKind::Unauthorized,
                format!("the reply comes from {}; the challenge was sent to {}", reply.from, row.recipient),
            )));
        }
        if let Some(why) = self.authentication_failure(conn, &reply.authentication, &row.recipient)? {
            return Ok(Err(problem(ErrorKind::Unauthorized, why)));
        }
        if let Some(in_reply_to) = &reply.in_reply_to {
            let id = in_reply_to.trim().trim_start_matches('<').trim_end_matches('>');
            let local = id.split('@').next().unwrap_or_default();
            if local != row.outbox_id {
                return Ok(Err(problem(
                    ErrorKind::IncorrectResponse,
                    "the reply's In-Reply-To does not name the challenge mail",
                )));
            }
        }
        let expected = expected_response(&row.token_part1, &challenge.token, thumbprint);
        Ok(match &reply.response {
            None => Err(problem(ErrorKind::IncorrectResponse, "the reply has no ACME RESPONSE block")),
            Some(got) if *got != expected => Err(problem(
                ErrorKind::IncorrectResponse,
                "the ACME RESPONSE does not match the key authorization of this challenge and account",
            )),
            Some(_) => Ok(()),
        })
    }

    /// None when the authentication counts for `address`, else why not.
    fn authentication_failure(
        &self,
        conn: &mut DbConnection,
        authentication: &ReplyAuthentication,
        address: &str,
    ) -> Result<Option<String>> {
        let domain = domain_of(address).to_ascii_lowercase();
        Ok(match authentication {
            ReplyAuthentication::Dkim { domains, .. } => {
                let aligned = domains.iter().any(|d| {
                    let d = d.to_ascii_lowercase();
                    domain == d || domain.ends_with(&format!(".{d}"))
                });
                (!aligned)
                    .then(|| format!("DKIM passed for [{}], which is not the From domain {domain}", domains.join(", ")))
            }
            ReplyAuthentication::Smime { signer_der } => self.smime_signer_failure(conn, signer_der, address)?,
            ReplyAuthentication::None { why } if !self.email_reply.accept_unauthenticated => Some(format!(
                "the reply is not authenticated ({why}): it needs a DKIM pass recorded by a trusted relay \
                 or a valid S/MIME signature"
            )),
            ReplyAuthentication::None { .. } => None,
        })
    }

    /// The signer must be certified for the address; a certificate of this CA's human track
    /// must also still be valid here (a revoked one, after a recovery say, no longer counts).
    fn smime_signer_failure(&self, conn: &mut DbConnection, der: &[u8], address: &str) -> Result<Option<String>> {
        use x509_parser::prelude::*;
        let Ok((_, cert)) = X509Certificate::from_der(der) else {
            return Ok(Some("the S/MIME signer's certificate does not parse".into()));
        };
        let mut addresses: Vec<String> = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                if let GeneralName::RFC822Name(a) = name {
                    addresses.push(a.to_string());
                }
            }
        }
        if !addresses.iter().any(|a| same_address(a, address)) {
            return Ok(Some(format!(
                "the S/MIME signature is by a certificate for [{}], not for {address}",
                addresses.join(", ")
            )));
        }
        let human_ski = &self.hierarchy.issuer(Track::Human).subject_key_identifier;
        let ours = cert.extensions().iter().any(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().is_some_and(|k| k.0 == human_ski.as_slice())
            }
            _ => false,
        });
        if ours {
            let serial = ids::hex(cert.raw_serial());
            let live = certificates::by_serial(conn, Track::Human, &serial)?
                .is_some_and(|c| c.status == crate::model::CertificateStatus::Valid);
            if !live {
                return Ok(Some(format!("the S/MIME signer's certificate {serial} is revoked or unknown")));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_carry_the_token_after_any_re_prefix() {
        assert_eq!(subject_token("ACME: abc-_9"), Some("abc-_9"));
        assert_eq!(subject_token("Re: ACME: abc"), Some("abc"));
        assert_eq!(subject_token("RE: re:ACME:abc"), Some("abc"));
        assert_eq!(subject_token("Fwd: ACME: abc"), None);
        assert_eq!(subject_token("ACME: a b"), None);
        assert_eq!(subject_token("ACME: "), None);
        assert_eq!(subject_token("hello"), None);
    }

    #[test]
    fn the_response_is_the_digest_of_both_token_halves_and_the_thumbprint() {
        let expected = ids::b64url(&ids::sha256(b"part1part2.thumb"));
        assert_eq!(expected_response("part1", "part2", "thumb"), expected);
        assert_eq!(expected.len(), 43);
    }
}
