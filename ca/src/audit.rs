//! The per-track audit chain. Each event's hash is SHA-256(prev_hash || canonical event), where
//! the canonical event is the JSON array [track, seq, at, actor, action, subject, details]:
//! one unambiguous encoding, so anyone can recompute the chain from the rows alone.

use serde_json::Value;

use crate::storage::{audit as store, DbConnection, Storage};
use crate::{ids, Result, Track};

pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub track: Track,
    pub at: i64,
    /// Who caused it: `account:<id>`, `operator:<subject>`, or `system`.
    pub actor: String,
    /// What happened, as `noun.verb`: `account.created`, `certificate.issued`, …
    pub action: String,
    /// What it happened to: `account:<id>`, `order:<id>`, `certificate:<serial>`, …
    pub subject: String,
    pub details: Value,
}

impl AuditEvent {
    pub fn new(
        track: Track,
        at: i64,
        actor: impl Into<String>,
        action: &str,
        subject: impl Into<String>,
        details: Value,
    ) -> Self {
        AuditEvent { track, at, actor: actor.into(), action: action.to_string(), subject: subject.into(), details }
    }

    pub fn chain_hash(&self, seq: i64, prev_hash: &str) -> String {
        chain_hash(
            prev_hash,
            self.track.as_str(),
            seq,
            self.at,
            &self.actor,
            &self.action,
            &self.subject,
            &self.details.to_string(),
        )
    }
}

#[allow(clippy::too_many_arguments)]
fn chain_hash(
    prev_hash: &str,
    track: &str,
    seq: i64,
    at: i64,
    actor: &str,
    action: &str,
    subject: &str,
    details: &str,
) -> String {
    let canonical = serde_json::json!([track, seq, at, actor, action, subject, details]).to_string();
    let mut input = Vec::with_capacity(prev_hash.len() + canonical.len());
    input.extend_from_slice(prev_hash.as_bytes());
    input.extend_from_slice(canonical.as_bytes());
    ids::hex(&ids::sha256(&input))
}

pub fn append(conn: &mut DbConnection, event: &AuditEvent) -> Result<i64> {
    store::append(conn, event)
}

/// Appends one event built from its parts; what most state changes write.
pub fn record(
    conn: &mut DbConnection,
    track: Track,
    at: i64,
    actor: impl Into<String>,
    action: &str,
    subject: impl Into<String>,
    details: Value,
) -> Result<i64> {
    store::append(conn, &AuditEvent::new(track, at, actor, action, subject, details))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainCheck {
    /// The whole chain recomputes; `events` is its length.
    Intact { events: i64 },
    /// The first event whose stored link or hash does not recompute.
    Broken { seq: i64, reason: String },
}

/// Recomputes a track's chain from its first event.
pub fn verify(storage: &Storage, track: Track) -> Result<ChainCheck> {
    storage.read(|conn| {
        let mut prev = GENESIS_HASH.to_string();
        let mut expected_seq = 1;
        loop {
            let rows = store::page(conn, track, expected_seq - 1, 1000)?;
            if rows.is_empty() {
                return Ok(ChainCheck::Intact { events: expected_seq - 1 });
            }
            for row in rows {
                if row.seq != expected_seq {
                    return Ok(ChainCheck::Broken { seq: expected_seq, reason: "event missing".into() });
                }
                if row.prev_hash != prev {
                    return Ok(ChainCheck::Broken {
                        seq: row.seq,
                        reason: "link to the previous event differs".into(),
                    });
                }
                let recomputed =
                    chain_hash(&prev, &row.track, row.seq, row.at, &row.actor, &row.action, &row.subject, &row.details);
                if recomputed != row.hash {
                    return Ok(ChainCheck::Broken { seq: row.seq, reason: "content does not match its hash".into() });
                }
                prev = row.hash;
                expected_seq += 1;
            }
        }
    })
}
