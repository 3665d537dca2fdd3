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

    /// The details as stored and hashed: serde_json's compact form.
    pub fn details_text(&self) -> String {
        serde_json::to_string(&self.details).expect("a JSON value always serializes")
    }

    /// The event's hash as number `seq` after `prev_hash`; `details` is `details_text()`, which
    /// the caller stores too.
    pub fn chain_hash(&self, seq: i64, prev_hash: &str, details: &str) -> String {
        chain_hash(prev_hash, self.track.as_str(), seq, &self.chain_tail(details))
    }

    /// The canonical array after its track and sequence number: `at,"actor","action",
    /// "subject","details"]`. It does not depend on the chain's head, so PostgreSQL's
    /// `dualca_audit_append` can be handed it and finish the hash under its lock.
    pub fn chain_tail(&self, details: &str) -> String {
        chain_tail(self.at, &self.actor, &self.action, &self.subject, details)
    }
}

/// The array `[track, seq, at, actor, action, subject, details]` in serde_json's compact form,
/// less its opening bracket, track and seq: the same bytes as `json!([...])`'s `to_string()`
/// from there on, without building a `Value` or going through `fmt` (see the test).
fn chain_tail(at: i64, actor: &str, action: &str, subject: &str, details: &str) -> String {
    let mut tail = Vec::with_capacity(64 + actor.len() + subject.len() + details.len());
    serde_json::to_writer(&mut tail, &(at, actor, action, subject, details))
        .expect("serializing strings and integers into a Vec cannot fail");
    tail.remove(0);
    String::from_utf8(tail).expect("serde_json writes UTF-8")
}

/// SHA-256 over `prev_hash`, then `[`, the track as a JSON string, `,`, seq, `,` and the tail.
/// PostgreSQL's `dualca_audit_append` (migrations/postgres, 000012) writes the same bytes for
/// the two tracks' names, which JSON leaves unescaped.
fn chain_hash(prev_hash: &str, track: &str, seq: i64, tail: &str) -> String {
    let mut input = Vec::with_capacity(prev_hash.len() + 32 + tail.len());
    input.extend_from_slice(prev_hash.as_bytes());
    input.push(b'[');
    serde_json::to_writer(&mut input, track).expect("serializing a string into a Vec cannot fail");
    input.push(b',');
    input.extend_from_slice(seq.to_string().as_bytes());
    input.push(b',');
    input.extend_from_slice(tail.as_bytes());
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
                let tail = chain_tail(row.at, &row.actor, &row.action, &row.subject, &row.details);
                let recomputed = chain_hash(&prev, &row.track, row.seq, &tail);
                if recomputed != row.hash {
                    return Ok(ChainCheck::Broken { seq: row.seq, reason: "content does not match its hash".into() });
                }
                prev = row.hash;
                expected_seq += 1;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash is SHA-256 over the previous hash and the compact JSON array of the event, as
    /// anyone can recompute it: this vector was computed with Python's `json.dumps(...,
    /// separators=(',', ':'), ensure_ascii=False)` and `hashlib.sha256`, and it equals what
    /// building the array as a `serde_json::Value` and printing it gives (the first form of
    /// this code, which every stored chain was hashed with).
    #[test]
    fn chain_hash_is_the_documented_encoding() {
        let event = awkward_event(Track::Machine);
        let details = event.details_text();
        assert_eq!(details, r#"{"a":[1,2.5,null,true],"b":"x\"y\\z\n\u0001é"}"#);
        let hash = event.chain_hash(7, GENESIS_HASH, &details);
        assert_eq!(hash, "7683aac6f436eca7941ad3a0e128d4883c388e0d46f283fc8be3693b8e075d82");

        let as_value = serde_json::json!([
            event.track.as_str(),
            7,
            event.at,
            event.actor,
            event.action,
            event.subject,
            event.details.to_string()
        ])
        .to_string();
        let mut input = GENESIS_HASH.as_bytes().to_vec();
        input.extend_from_slice(as_value.as_bytes());
        assert_eq!(hash, ids::hex(&ids::sha256(&input)));
    }

    /// An event whose strings need JSON's escapes and are not all ASCII.
    fn awkward_event(track: Track) -> AuditEvent {
        AuditEvent::new(
            track,
            1_765_000_000,
            "account:ü\t1",
            "certificate.issued",
            "certificate:01AB",
            serde_json::json!({"b": "x\"y\\z\n\u{1}é", "a": [1, 2.5, null, true]}),
        )
    }

    /// Appends number their track's chain from 1 and hash as `chain_hash` does on both
    /// backends (on PostgreSQL the hash is finished in SQL, `dualca_audit_append`), and
    /// appends racing from several threads take turns: the chain recomputes without a gap.
    #[test]
    fn appends_chain_alike_on_both_backends_and_take_turns() {
        for storage in crate::storage::testing::storages() {
            let first = awkward_event(Track::Machine);
            assert_eq!(storage.write(|conn| append(conn, &first)).unwrap(), 1);
            let head = storage.read(|conn| store::head(conn, Track::Machine)).unwrap().unwrap();
            assert_eq!(head.prev_hash, GENESIS_HASH);
            assert_eq!(head.details, first.details_text());
            assert_eq!(head.hash, first.chain_hash(1, GENESIS_HASH, &first.details_text()));
            let second = storage.write(|conn| append(conn, &awkward_event(Track::Machine))).unwrap();
            assert_eq!(second, 2);
            let head2 = storage.read(|conn| store::head(conn, Track::Machine)).unwrap().unwrap();
            assert_eq!(head2.prev_hash, head.hash);
            assert_eq!(head2.hash, first.chain_hash(2, &head.hash, &first.details_text()));

            std::thread::scope(|scope| {
                for thread in 0..4 {
                    let storage = &*storage;
                    scope.spawn(move || {
                        for i in 0..25 {
                            let event = AuditEvent::new(
                                Track::Machine,
                                1_765_000_000 + i,
                                format!("system:{thread}"),
                                "test.appended",
                                format!("thread:{thread}"),
                                serde_json::json!({"i": i}),
                            );
                            storage.write(|conn| append(conn, &event)).unwrap();
                        }
                    });
                }
            });
            assert_eq!(verify(&storage, Track::Machine).unwrap(), ChainCheck::Intact { events: 102 });
            assert_eq!(storage.write(|conn| append(conn, &awkward_event(Track::Human))).unwrap(), 1);
            assert_eq!(verify(&storage, Track::Human).unwrap(), ChainCheck::Intact { events: 1 });
        }
    }
}
