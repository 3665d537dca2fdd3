use diesel::prelude::*;

use super::rows::AuditRow;
use super::schema::audit_events::dsl as e;
use super::{Bind, DbConnection, Fixed};
use crate::audit::{AuditEvent, GENESIS_HASH};
use crate::{Result, Track};

/// The first row of a query ordered along the primary key. On SQLite without a LIMIT: diesel
/// binds `first`'s limit as a parameter, and SQLite recompiles a statement whose LIMIT is a
/// bound value every time it is bound (it may plan by the value), which on the audit append,
/// once per write transaction, cost more than the query; the ordered index scan stops at the
/// first row either way. PostgreSQL sends a whole result to the client, so it keeps the limit.
/// The query is written once and run on the connection's own backend, as `on_backend!` does.
macro_rules! newest {
    ($conn:expr, $query:expr) => {
        match $conn {
            DbConnection::Sqlite(db) => $query.get_result(db).optional(),
            DbConnection::Postgresql(db) => $query.first(db).optional(),
        }
    };
}

/// The call of `dualca_audit_append`, with one `?` for each of `PgAppend::binds`, in order: a
/// literal, for `concat!` into a `Fixed` statement's text.
macro_rules! pg_audit_append {
    () => {
        "dualca_audit_append(?, ?, ?, ?, ?, ?, ?, ?)"
    };
}
pub(crate) use pg_audit_append;

/// The number `dualca_audit_append` gave an event.
#[derive(diesel::QueryableByName)]
pub(crate) struct Appended {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub(crate) seq: i64,
}

/// What PostgreSQL's `dualca_audit_append` is handed for one event, beside the event's own
/// fields: the track's lock key, and the part of the canonical array it hashes after the head.
/// A statement that appends as part of a larger one (`orders::settle_network_challenge`) puts
/// `pg_audit_append!()` in its text and `binds` in the same place among its own.
pub(crate) struct PgAppend {
    lock_key: i64,
    details: String,
    tail: String,
}

impl PgAppend {
    pub(crate) fn of(event: &AuditEvent, details: &str) -> PgAppend {
        let lock_key: i64 = match event.track {
            Track::Machine => 0x6475_616c_6361_0001,
            Track::Human => 0x6475_616c_6361_0002,
        };
        PgAppend { lock_key, details: details.to_string(), tail: event.chain_tail(details) }
    }

    pub(crate) fn binds<'a>(&'a self, event: &'a AuditEvent) -> Vec<Bind<'a>> {
        vec![
            Bind::Text(event.track.as_str()),
            Bind::BigInt(self.lock_key),
            Bind::BigInt(event.at),
            Bind::Text(&event.actor),
            Bind::Text(&event.action),
            Bind::Text(&event.subject),
            Bind::Text(&self.details),
            Bind::Text(&self.tail),
        ]
    }
}

/// Appends one event to its track's chain, as number head + 1, and returns that number.
///
/// On PostgreSQL one statement, `dualca_audit_append` (migration `audit_append`): it takes a
/// transaction-scoped advisory lock per track, which orders concurrent appends from every
/// process, reads the head and inserts the event, hashing it in SQL from the part of the
/// canonical array computed here. On SQLite the single writer already orders appends, and
/// the head is read and the hash computed here.
pub fn append(conn: &mut DbConnection, event: &AuditEvent) -> Result<i64> {
    let details = event.details_text();
    if let DbConnection::Postgresql(pg) = conn {
        let parts = PgAppend::of(event, &details);
        // A `Fixed` statement, which diesel prepares once per connection.
        let appended: Appended =
            Fixed::new(concat!("SELECT ", pg_audit_append!(), " AS seq"), parts.binds(event)).get_result(pg)?;
        return Ok(appended.seq);
    }
    let last: Option<(i64, String)> = newest!(
        conn,
        e::audit_events.filter(e::track.eq(event.track.as_str())).order(e::seq.desc()).select((e::seq, e::hash))
    )?;
    let (seq, prev_hash) = match last {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS_HASH.to_string()),
    };
    let hash = event.chain_hash(seq, &prev_hash, &details);
    let row = AuditRow {
        track: event.track.as_str().to_string(),
        seq,
        at: event.at,
        actor: event.actor.clone(),
        action: event.action.clone(),
        subject: event.subject.clone(),
        details,
        prev_hash,
        hash,
    };
    on_backend!(conn, |db| diesel::insert_into(e::audit_events).values(&row).execute(db))?;
    Ok(seq)
}

/// One page of a track's chain in sequence order, for verification and export.
pub fn page(conn: &mut DbConnection, track: Track, after_seq: i64, limit: i64) -> Result<Vec<AuditRow>> {
    Ok(e::audit_events
        .filter(e::track.eq(track.as_str()))
        .filter(e::seq.gt(after_seq))
        .order(e::seq.asc())
        .limit(limit)
        .select(AuditRow::as_select())
        .load(conn)?)
}

/// What an audit query may narrow by; every field is optional.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub action: Option<String>,
    pub actor: Option<String>,
    pub subject: Option<String>,
    /// Matches events about the certificate, or naming it in their details.
    pub serial: Option<String>,
}

/// A filtered page of a track's chain, oldest first, after `after_seq`.
pub fn search(
    conn: &mut DbConnection,
    track: Track,
    filter: &AuditFilter,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<AuditRow>> {
    let mut query = e::audit_events.filter(e::track.eq(track.as_str())).filter(e::seq.gt(after_seq)).into_boxed();
    if let Some(from) = filter.from {
        query = query.filter(e::at.ge(from));
    }
    if let Some(to) = filter.to {
        query = query.filter(e::at.lt(to));
    }
    if let Some(action) = &filter.action {
        query = query.filter(e::action.eq(action.clone()));
    }
    if let Some(actor) = &filter.actor {
        query = query.filter(e::actor.eq(actor.clone()));
    }
    if let Some(subject) = &filter.subject {
        query = query.filter(e::subject.eq(subject.clone()));
    }
    if let Some(serial) = &filter.serial {
        let subject = format!("certificate:{serial}");
        let mention = format!("%{serial}%");
        query = query.filter(e::subject.eq(subject).or(e::details.like(mention)));
    }
    Ok(query.order(e::seq.asc()).limit(limit).select(AuditRow::as_select()).load(conn)?)
}

pub fn head(conn: &mut DbConnection, track: Track) -> Result<Option<AuditRow>> {
    Ok(newest!(
        conn,
        e::audit_events.filter(e::track.eq(track.as_str())).order(e::seq.desc()).select(AuditRow::as_select())
    )?)
}
