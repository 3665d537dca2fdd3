//! The outbox. A service that notifies someone calls `enqueue` inside its own `Storage::write`,
//! so the mail commits or rolls back with the event that causes it; the delivery worker in the
//! binary drains the outbox through `due_mail`, `mark_mail_sent` and `mark_mail_failed`. A row
//! is marked sent only after the relay accepted it, so a crash between the two sends it again
//! (with the same Message-ID) rather than never.

use super::Ca;
use crate::storage::outbox::{self as store, OutboxRow};
use crate::storage::rows::parse_track;
use crate::storage::DbConnection;
use crate::{Result, Track};

/// After this many failed attempts a mail is no longer tried; its row keeps the last error.
pub const MAX_MAIL_ATTEMPTS: i64 = 20;
const FIRST_RETRY_SECONDS: i64 = 30;
const MAX_RETRY_SECONDS: i64 = 3600;
/// Longer errors are cut: a relay's reply can be long, and the row only needs the gist.
const MAX_ERROR_CHARS: usize = 1000;

/// A mail to send. Build one with `OutboundMail::notification` to get both bodies from one
/// text, or set the fields directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMail {
    pub track: Track,
    pub recipient: String,
    pub subject: String,
    pub body_text: String,
    pub body_html: String,
    /// Names the occasion, e.g. `expiry-reminder:<serial>:7d`: a mail whose key was enqueued
    /// before (sent or not, before a restart or not) is not enqueued again.
    pub dedupe_key: Option<String>,
    /// Until when (Unix seconds) the dedupe key must hold: after it the occasion cannot come
    /// again (the certificate has expired, say), and the housekeeping may purge the sent row.
    pub dedupe_until: Option<i64>,
    /// The From address, when it is not the configured `[mail] from` (RFC 8823 challenge
    /// mails come from the address replies are read at).
    pub sender: Option<String>,
    /// The `Auto-Submitted` value, when it is not plain `auto-generated`.
    pub auto_submitted: Option<String>,
    /// The outbox row's id, when the caller must know it (it is the Message-ID's local part).
    pub id: Option<String>,
}

impl OutboundMail {
    /// A notification whose plain-text and HTML bodies are rendered from the subject, as its
    /// title, and the paragraphs.
    pub fn notification(
        track: Track,
        recipient: impl Into<String>,
        subject: impl Into<String>,
        paragraphs: &[&str],
    ) -> OutboundMail {
        let subject = subject.into();
        let body = render_mail(&subject, paragraphs);
        OutboundMail {
            track,
            recipient: recipient.into(),
            subject,
            body_text: body.text,
            body_html: body.html,
            dedupe_key: None,
            dedupe_until: None,
            sender: None,
            auto_submitted: None,
            id: None,
        }
    }

    /// Enqueued at most once for `key`, which holds until `until` (Unix seconds): pass the time
    /// after which the occasion cannot recur, such as the certificate's expiry.
    pub fn with_dedupe_key(mut self, key: impl Into<String>, until: i64) -> OutboundMail {
        self.dedupe_key = Some(key.into());
        self.dedupe_until = Some(until);
        self
    }
}

/// What one housekeeping run deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Housekeeping {
    pub mail: usize,
    pub token_revocations: usize,
    pub orders: usize,
}

/// How long the housekeeping job keeps what is finished, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Sent and given-up mail, from its last attempt (`[mail] keep_sent`).
    pub keep_sent: i64,
    /// Orders, from their expiry (`keep_orders`).
    pub keep_orders: i64,
}

/// Orders purged in one write transaction, and batches in one housekeeping run.
const ORDER_PURGE_BATCH: i64 = 500;
const ORDER_PURGE_BATCHES: usize = 200;

/// The two bodies of a multipart/alternative mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailBody {
    pub text: String,
    pub html: String,
}

/// Renders a title and paragraphs as plain text and as minimal HTML, every piece of text
/// escaped; a line break inside a paragraph stays one.
pub fn render_mail(title: &str, paragraphs: &[&str]) -> MailBody {
    let mut text = format!("{title}\n\n");
    let mut html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{0}</title></head>\n<body>\n<h1>{0}</h1>\n",
        escape_html(title)
    );
    for paragraph in paragraphs {
        text.push_str(paragraph);
        text.push_str("\n\n");
        let lines: Vec<String> = paragraph.lines().map(escape_html).collect();
        html.push_str(&format!("<p>{}</p>\n", lines.join("<br>\n")));
    }
    text.push_str("-- \nThis message was sent automatically by dualca.\n");
    html.push_str("<p><small>This message was sent automatically by dualca.</small></p>\n</body></html>\n");
    MailBody { text, html }
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A mail in the outbox, as the delivery worker and an operator see it.
#[derive(Debug, Clone)]
pub struct QueuedMail {
    /// Also the Message-ID's local part, so that a resend after a crash can be recognised.
    pub id: String,
    pub track: Track,
    pub recipient: String,
    pub subject: String,
    pub body_text: String,
    pub body_html: String,
    pub dedupe_key: Option<String>,
    pub created_at: i64,
    /// Failed attempts so far.
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub sender: Option<String>,
    pub auto_submitted: Option<String>,
}

impl QueuedMail {
    /// An RFC 8823 challenge mail, whose subject is half of its token and is shown to no one.
    pub fn is_challenge_mail(&self) -> bool {
        self.auto_submitted.as_deref() == Some(super::AUTO_SUBMITTED_ACME)
    }

    /// The subject as operators are shown it (the admin API and pages, the command line): a
    /// challenge mail's is withheld.
    pub fn subject_for_operators(&self) -> &str {
        if self.is_challenge_mail() {
            "ACME: (a challenge mail; its subject is not shown)"
        } else {
            &self.subject
        }
    }

    /// Whether delivery has stopped trying: only an operator's retry sends it now.
    pub fn given_up(&self) -> bool {
        self.attempts >= MAX_MAIL_ATTEMPTS
    }
}

impl TryFrom<OutboxRow> for QueuedMail {
    type Error = crate::Error;
    fn try_from(r: OutboxRow) -> Result<QueuedMail> {
        Ok(QueuedMail {
            track: parse_track(&r.track)?,
            id: r.id,
            recipient: r.recipient,
            subject: r.subject,
            body_text: r.body_text,
            body_html: r.body_html,
            dedupe_key: r.dedupe_key,
            created_at: r.created_at,
            attempts: r.attempts,
            next_attempt_at: r.next_attempt_at,
            last_error: r.last_error,
            sender: r.sender,
            auto_submitted: r.auto_submitted,
        })
    }
}

/// What became of a mail whose delivery failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailRetry {
    /// It will be tried again at this time (Unix seconds).
    At(i64),
    /// It was the last attempt; the row stays unsent with its last error.
    GivenUp,
}

/// How long to wait after the `failed_attempts`-th failure: 30 s, 60 s, 120 s, … at most an
/// hour.
pub fn mail_retry_delay(failed_attempts: i64) -> i64 {
    let doublings = failed_attempts.saturating_sub(1).clamp(0, 16) as u32;
    (FIRST_RETRY_SECONDS << doublings).min(MAX_RETRY_SECONDS)
}

/// Puts a mail in the outbox inside the caller's transaction. Returns false, and writes
/// nothing, when the mail's dedupe key was enqueued before; it never fails for that reason, so
/// it does not abort the surrounding transaction on PostgreSQL.
pub(crate) fn enqueue(conn: &mut DbConnection, mail: &OutboundMail, now: i64) -> Result<bool> {
    let header_safe = |text: &str| -> String { text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect() };
    let row = OutboxRow {
        id: mail.id.clone().unwrap_or_else(crate::ids::new_id),
        track: mail.track.as_str().to_string(),
        recipient: mail.recipient.trim().to_string(),
        // A line break in a header would end it; the relay would see the rest as headers.
        subject: header_safe(&mail.subject),
        body_text: mail.body_text.clone(),
        body_html: mail.body_html.clone(),
        dedupe_key: mail.dedupe_key.clone(),
        created_at: now,
        attempts: 0,
        next_attempt_at: now,
        sent_at: None,
        last_error: None,
        sender: mail.sender.as_deref().map(header_safe),
        auto_submitted: mail.auto_submitted.as_deref().map(header_safe),
        dedupe_until: mail.dedupe_until,
    };
    store::insert(conn, &row)
}

fn shorten(error: &str) -> &str {
    match error.char_indices().nth(MAX_ERROR_CHARS) {
        Some((end, _)) => &error[..end],
        None => error,
    }
}

impl Ca {
    /// Enqueues a mail in a transaction of its own, for callers that write nothing else.
    pub fn enqueue_mail(&self, mail: &OutboundMail) -> Result<bool> {
        let now = self.clock.unix();
        self.storage.write(|conn| enqueue(conn, mail, now))
    }

    /// At most `limit` mails due now, the longest-waiting first.
    pub fn due_mail(&self, limit: i64) -> Result<Vec<QueuedMail>> {
        let now = self.clock.unix();
        let rows = self.storage.read(|conn| store::due(conn, now, MAX_MAIL_ATTEMPTS, limit))?;
        rows.into_iter().map(QueuedMail::try_from).collect()
    }

    /// Unsent mail, including mail that was given up on, oldest first: what an operator looks
    /// at when mail does not arrive.
    pub fn undelivered_mail(&self, limit: i64) -> Result<Vec<QueuedMail>> {
        let rows = self.storage.read(|conn| store::unsent(conn, None, limit))?;
        rows.into_iter().map(QueuedMail::try_from).collect()
    }

    /// `undelivered_mail` of one track.
    pub fn undelivered_mail_of(&self, track: Track, limit: i64) -> Result<Vec<QueuedMail>> {
        let rows = self.storage.read(|conn| store::unsent(conn, Some(track.as_str()), limit))?;
        rows.into_iter().map(QueuedMail::try_from).collect()
    }

    /// An operator sends a given-up mail again (once the relay is fixed, say): it gets its
    /// attempts back and is due at once, and the request is audited on the mail's track. Mail
    /// that was sent, or is of another track, is `not_found`; mail still being tried is a
    /// `conflict`.
    pub fn retry_mail(&self, track: Track, id: &str, actor: &str) -> Result<QueuedMail> {
        let now = self.clock.unix();
        self.storage.write(|conn| {
            let row = store::unsent_by_id(conn, track.as_str(), id)?
                .ok_or_else(|| crate::Error::not_found(format!("no unsent mail {id} on the {track} track")))?;
            if row.attempts < MAX_MAIL_ATTEMPTS {
                return Err(crate::Error::conflict(format!(
                    "mail {id} is still being tried ({} failed attempts of {MAX_MAIL_ATTEMPTS}); only given-up mail is sent again",
                    row.attempts
                )));
            }
            if !store::requeue(conn, id, MAX_MAIL_ATTEMPTS, now)? {
                return Err(crate::Error::conflict(format!("mail {id} changed meanwhile")));
            }
            crate::audit::record(
                conn,
                track,
                now,
                actor,
                "mail.retry",
                format!("mail:{id}"),
                serde_json::json!({ "recipient": row.recipient, "attempts": row.attempts, "last_error": row.last_error }),
            )?;
            let mut mail = QueuedMail::try_from(row)?;
            mail.attempts = 0;
            mail.next_attempt_at = now;
            Ok(mail)
        })
    }

    pub fn mark_mail_sent(&self, id: &str) -> Result<()> {
        let now = self.clock.unix();
        self.storage.write(|conn| store::mark_sent(conn, id, now)).map(|_| ())
    }

    /// Records a failed attempt and when to try again (see `mail_retry_delay`); after
    /// `MAX_MAIL_ATTEMPTS` failures the mail is given up.
    pub fn mark_mail_failed(&self, id: &str, error: &str, next_attempt_at: i64) -> Result<MailRetry> {
        let attempts = self.storage.write(|conn| store::mark_failed(conn, id, shorten(error), next_attempt_at))?;
        Ok(match attempts {
            Some(n) if n < MAX_MAIL_ATTEMPTS => MailRetry::At(next_attempt_at),
            _ => MailRetry::GivenUp,
        })
    }

    /// Gives a mail up at once, for failures that a retry cannot fix (an address the relay
    /// refuses for good, one that does not parse).
    pub fn abandon_mail(&self, id: &str, error: &str) -> Result<()> {
        self.storage.write(|conn| store::abandon(conn, id, shorten(error), MAX_MAIL_ATTEMPTS)).map(|_| ())
    }

    /// Unsent mail that is still being tried.
    pub fn outbox_backlog(&self) -> Result<i64> {
        self.storage.read(|conn| store::backlog(conn, MAX_MAIL_ATTEMPTS))
    }

    /// The housekeeping job: drops mail sent or given up more than `keep_sent` seconds ago
    /// whose dedupe key no longer matters (`store::purge`); revocations of admin tokens that
    /// expired more than a day ago (an expired token is refused whether revoked or not; the day
    /// covers clocks that differ between processes); and orders expired more than `keep_orders`
    /// seconds ago, with their authorizations and challenges. Orders go in batches of
    /// `ORDER_PURGE_BATCH`, a write transaction each, so that issuance waits for none of them
    /// long; at most `ORDER_PURGE_BATCHES` a run, and the next run goes on.
    pub fn housekeeping(&self, retention: Retention) -> Result<Housekeeping> {
        let now = self.clock.unix();
        let (mail, token_revocations) = self.storage.write(|conn| {
            Ok((
                store::purge(conn, now - retention.keep_sent, now, MAX_MAIL_ATTEMPTS)?,
                crate::storage::tokens::purge_expired(conn, now - 86_400)?,
            ))
        })?;
        let mut orders = 0;
        for _ in 0..ORDER_PURGE_BATCHES {
            let purged = self.storage.write(|conn| {
                crate::storage::orders::purge_expired(conn, now - retention.keep_orders, ORDER_PURGE_BATCH)
            })?;
            orders += purged;
            if purged < ORDER_PURGE_BATCH as usize {
                break;
            }
        }
        Ok(Housekeeping { mail, token_revocations, orders })
    }

    /// Unsent mail that was given up on.
    pub fn outbox_given_up(&self) -> Result<i64> {
        self.storage.read(|conn| store::given_up(conn, MAX_MAIL_ATTEMPTS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_an_hour() {
        let delays: Vec<i64> = (1..=9).map(mail_retry_delay).collect();
        assert_eq!(delays, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(mail_retry_delay(MAX_MAIL_ATTEMPTS), 3600);
        assert_eq!(mail_retry_delay(i64::MAX), 3600);
    }

    #[test]
    fn html_is_escaped_and_text_is_not() {
        let body = render_mail("Expiry <soon> & \"now\"", &["first <b>line</b>\nsecond 'line'", "x"]);
        assert!(body.text.starts_with("Expiry <soon> & \"now\"\n\nfirst <b>line</b>\nsecond 'line'\n\nx\n\n"));
        assert!(body.html.contains("<h1>Expiry &lt;soon&gt; &amp; &quot;now&quot;</h1>"));
        assert!(body.html.contains("<p>first &lt;b&gt;line&lt;/b&gt;<br>\nsecond &#39;line&#39;</p>"));
        assert!(!body.html.contains("<b>"));
    }

    fn mail(key: Option<&str>) -> OutboundMail {
        let mail = OutboundMail::notification(Track::Human, "a@example.test", "Subject\r\nBcc: x@example.test", &["p"]);
        match key {
            Some(k) => mail.with_dedupe_key(k, 5000),
            None => mail,
        }
    }

    #[test]
    fn enqueue_commits_and_rolls_back_with_the_surrounding_transaction() {
        for storage in crate::storage::testing::storages() {
            // A taken key neither fails nor spoils the transaction: the writes after it commit.
            let outcomes = storage
                .write(|conn| {
                    let first = enqueue(conn, &mail(Some("reminder:1:7d")), 100)?;
                    let again = enqueue(conn, &mail(Some("reminder:1:7d")), 100)?;
                    let unkeyed = enqueue(conn, &mail(None), 100)?;
                    Ok((first, again, unkeyed))
                })
                .unwrap();
            assert_eq!(outcomes, (true, false, true));
            let in_later_transaction = storage.write(|conn| enqueue(conn, &mail(Some("reminder:1:7d")), 200)).unwrap();
            assert!(!in_later_transaction);

            // A transaction that fails takes its mail with it.
            let failed: Result<()> = storage.write(|conn| {
                enqueue(conn, &mail(Some("reminder:2:7d")), 100)?;
                Err(crate::Error::conflict("the event failed"))
            });
            assert!(failed.is_err());
            let rows = storage.read(|conn| store::unsent(conn, None, 10)).unwrap();
            assert_eq!(rows.len(), 2);
            assert!(rows.iter().all(|r| r.subject == "Subject  Bcc: x@example.test"));
            assert!(storage.write(|conn| enqueue(conn, &mail(Some("reminder:2:7d")), 300)).unwrap());

            // Attempts count up to the limit, after which the row is no longer due.
            let id = rows[0].id.clone();
            for n in 1..=MAX_MAIL_ATTEMPTS {
                let attempts = storage.write(|conn| store::mark_failed(conn, &id, "refused", 0)).unwrap();
                assert_eq!(attempts, Some(n));
            }
            let due = storage.read(|conn| store::due(conn, 1000, MAX_MAIL_ATTEMPTS, 10)).unwrap();
            assert_eq!(due.len(), 2);
            assert!(due.iter().all(|r| r.id != id));
            assert_eq!(storage.read(|conn| store::given_up(conn, MAX_MAIL_ATTEMPTS)).unwrap(), 1);
            assert!(storage.write(|conn| store::mark_sent(conn, &due[0].id, 1000)).unwrap());
            assert!(!storage.write(|conn| store::mark_sent(conn, &due[0].id, 1001)).unwrap());
            assert_eq!(storage.read(|conn| store::backlog(conn, MAX_MAIL_ATTEMPTS)).unwrap(), 1);
        }
    }

    /// Housekeeping drops mail sent or given up before the cut-off once its dedupe key no
    /// longer matters, and nothing else; a purged key can be enqueued again. Revocations of
    /// admin tokens go once the tokens have expired.
    #[test]
    fn purge_keeps_unsent_recent_and_still_deduplicating_mail() {
        use crate::storage::outbox::testing::{forget_dedupe_until, rows};
        use crate::storage::tokens;
        let to = |recipient: &str| OutboundMail::notification(Track::Human, recipient, "s", &["p"]);
        let keyed = |recipient: &str, key: &str, until: i64| to(recipient).with_dedupe_key(key, until);
        for storage in crate::storage::testing::storages() {
            let left =
                || -> Vec<String> { storage.read(rows).unwrap().into_iter().map(|(_, recipient)| recipient).collect() };
            storage
                .write(|conn| {
                    for mail in [
                        to("sent-old@x"),
                        to("unsent-old@x"),
                        to("given-up-old@x"),
                        keyed("sent-keyed@x", "expiry:1:7d", 5000),
                        keyed("sent-legacy@x", "expiry:2:7d", 0),
                    ] {
                        enqueue(conn, &mail, 100)?;
                    }
                    enqueue(conn, &to("sent-recent@x"), 900)?;
                    // A row from before `dedupe_until`: a key without a date.
                    forget_dedupe_until(conn, "sent-legacy@x")?;
                    for (id, recipient) in rows(conn)? {
                        match recipient.as_str() {
                            "unsent-old@x" => {}
                            "given-up-old@x" => assert!(store::abandon(conn, &id, "refused", MAX_MAIL_ATTEMPTS)?),
                            _ => assert!(store::mark_sent(conn, &id, 950)?),
                        }
                    }
                    tokens::revoke(conn, "expired", "admin", 100, 500)?;
                    tokens::revoke(conn, "live", "admin", 100, 2000)?;
                    Ok(())
                })
                .unwrap();

            // At 1000, keeping 500 s: the cut-off is 500.
            let purged = storage.write(|conn| store::purge(conn, 500, 1000, MAX_MAIL_ATTEMPTS)).unwrap();
            assert_eq!(purged, 2);
            assert_eq!(left(), ["sent-keyed@x", "sent-legacy@x", "sent-recent@x", "unsent-old@x"]);
            assert!(!storage.write(|conn| enqueue(conn, &keyed("again@x", "expiry:1:7d", 9000), 1000)).unwrap());
            // Past the key's date it goes too, and the key is free again; the legacy row stays.
            let purged = storage.write(|conn| store::purge(conn, 500, 6000, MAX_MAIL_ATTEMPTS)).unwrap();
            assert_eq!(purged, 1);
            assert_eq!(left(), ["sent-legacy@x", "sent-recent@x", "unsent-old@x"]);
            assert!(storage.write(|conn| enqueue(conn, &keyed("again@x", "expiry:1:7d", 9000), 6000)).unwrap());

            assert_eq!(storage.write(|conn| tokens::purge_expired(conn, 1000)).unwrap(), 1);
            assert!(!storage.read(|conn| tokens::is_revoked(conn, "expired")).unwrap());
            assert!(storage.read(|conn| tokens::is_revoked(conn, "live")).unwrap());
        }
    }

    #[test]
    fn long_errors_are_cut_on_a_character_boundary() {
        let error = "é".repeat(MAX_ERROR_CHARS + 5);
        assert_eq!(shorten(&error).chars().count(), MAX_ERROR_CHARS);
        assert_eq!(shorten("short"), "short");
    }
}
