//! The outbox: mail rows written inside other writes' transactions, and the delivery worker's
//! reads and updates.

use diesel::prelude::*;

use super::schema::outbox::dsl as o;
use super::DbConnection;
use crate::Result;

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = super::schema::outbox)]
#[diesel(treat_none_as_default_value = false)]
pub struct OutboxRow {
    pub id: String,
    pub track: String,
    pub recipient: String,
    pub subject: String,
    pub body_text: String,
    pub body_html: String,
    pub dedupe_key: Option<String>,
    pub created_at: i64,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub sent_at: Option<i64>,
    pub last_error: Option<String>,
    pub sender: Option<String>,
    pub auto_submitted: Option<String>,
    pub dedupe_until: Option<i64>,
}

/// Inserts `row` unless its dedupe key is taken; returns whether it did. It never fails on a
/// taken key, because on PostgreSQL a unique violation would abort the caller's transaction:
/// the key is looked up first, and the insert itself does nothing on conflict, which covers a
/// concurrent transaction that inserted the same key after the lookup.
pub fn insert(conn: &mut DbConnection, row: &OutboxRow) -> Result<bool> {
    if let Some(key) = &row.dedupe_key {
        let taken: i64 = o::outbox.filter(o::dedupe_key.eq(key)).count().get_result(conn)?;
        if taken > 0 {
            return Ok(false);
        }
    }
    let query = diesel::insert_into(o::outbox).values(row).on_conflict_do_nothing();
    let inserted = match conn {
        DbConnection::Postgresql(pg) => query.execute(pg)?,
        DbConnection::Sqlite(lite) => query.execute(lite)?,
    };
    Ok(inserted == 1)
}

/// Unsent rows due at `now` that have attempts left, the longest-waiting first.
pub fn due(conn: &mut DbConnection, now: i64, max_attempts: i64, limit: i64) -> Result<Vec<OutboxRow>> {
    Ok(o::outbox
        .filter(o::sent_at.is_null())
        .filter(o::next_attempt_at.le(now))
        .filter(o::attempts.lt(max_attempts))
        .order((o::next_attempt_at.asc(), o::created_at.asc(), o::id.asc()))
        .limit(limit)
        .select(OutboxRow::as_select())
        .load(conn)?)
}

/// Every unsent row, given up or not, oldest first; of one track when `track` says so.
pub fn unsent(conn: &mut DbConnection, track: Option<&str>, limit: i64) -> Result<Vec<OutboxRow>> {
    let mut query = o::outbox.filter(o::sent_at.is_null()).into_boxed();
    if let Some(track) = track {
        query = query.filter(o::track.eq(track));
    }
    Ok(query.order((o::created_at.asc(), o::id.asc())).limit(limit).select(OutboxRow::as_select()).load(conn)?)
}

/// An unsent row of `track` by id.
pub fn unsent_by_id(conn: &mut DbConnection, track: &str, id: &str) -> Result<Option<OutboxRow>> {
    Ok(o::outbox
        .filter(o::id.eq(id))
        .filter(o::track.eq(track))
        .filter(o::sent_at.is_null())
        .select(OutboxRow::as_select())
        .get_result(conn)
        .optional()?)
}

/// Gives a given-up row its attempts back, due at `now`; returns whether it was given up
/// (and unsent) and now is not.
pub fn requeue(conn: &mut DbConnection, id: &str, max_attempts: i64, now: i64) -> Result<bool> {
    let n = diesel::update(
        o::outbox.filter(o::id.eq(id)).filter(o::sent_at.is_null()).filter(o::attempts.ge(max_attempts)),
    )
    .set((o::attempts.eq(0), o::next_attempt_at.eq(now)))
    .execute(conn)?;
    Ok(n == 1)
}

pub fn mark_sent(conn: &mut DbConnection, id: &str, now: i64) -> Result<bool> {
    let n = diesel::update(o::outbox.filter(o::id.eq(id)).filter(o::sent_at.is_null()))
        .set((o::sent_at.eq(Some(now)), o::last_error.eq(None::<String>)))
        .execute(conn)?;
    Ok(n == 1)
}

/// Counts one more failed attempt; returns the attempts made so far, or None when the row is
/// gone or already sent.
pub fn mark_failed(conn: &mut DbConnection, id: &str, error: &str, next_attempt_at: i64) -> Result<Option<i64>> {
    let n = diesel::update(o::outbox.filter(o::id.eq(id)).filter(o::sent_at.is_null()))
        .set((o::attempts.eq(o::attempts + 1), o::last_error.eq(Some(error)), o::next_attempt_at.eq(next_attempt_at)))
        .execute(conn)?;
    if n == 0 {
        return Ok(None);
    }
    Ok(Some(o::outbox.filter(o::id.eq(id)).select(o::attempts).get_result(conn)?))
}

/// Stops retrying a row: its attempts are set to `max_attempts`, which `due` leaves out.
pub fn abandon(conn: &mut DbConnection, id: &str, error: &str, max_attempts: i64) -> Result<bool> {
    let n = diesel::update(o::outbox.filter(o::id.eq(id)).filter(o::sent_at.is_null()))
        .set((o::attempts.eq(max_attempts), o::last_error.eq(Some(error))))
        .execute(conn)?;
    Ok(n == 1)
}

/// Unsent rows that are still being tried.
pub fn backlog(conn: &mut DbConnection, max_attempts: i64) -> Result<i64> {
    Ok(o::outbox.filter(o::sent_at.is_null()).filter(o::attempts.lt(max_attempts)).count().get_result(conn)?)
}

/// Unsent rows that ran out of attempts.
pub fn given_up(conn: &mut DbConnection, max_attempts: i64) -> Result<i64> {
    Ok(o::outbox.filter(o::sent_at.is_null()).filter(o::attempts.ge(max_attempts)).count().get_result(conn)?)
}

/// Deletes mail that was sent, or given up, before `created_before`, unless its dedupe key
/// still matters: a key whose `dedupe_until` is not yet past, or a key without one (rows from
/// before that column, kept for good). Returns how many went.
pub fn purge(conn: &mut DbConnection, created_before: i64, now: i64, max_attempts: i64) -> Result<usize> {
    let done = o::sent_at.is_not_null().or(o::attempts.ge(max_attempts));
    let key_over = o::dedupe_key.is_null().or(o::dedupe_until.lt(now).assume_not_null());
    Ok(diesel::delete(o::outbox.filter(o::created_at.lt(created_before)).filter(done).filter(key_over))
        .execute(conn)?)
}

/// Reads and edits for the tests in `service::outbox`, which cannot name the schema.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Every row's id and recipient, by recipient.
    pub fn rows(conn: &mut DbConnection) -> Result<Vec<(String, String)>> {
        Ok(o::outbox.select((o::id, o::recipient)).order(o::recipient).load(conn)?)
    }

    /// Makes a row look as if written before `dedupe_until` existed.
    pub fn forget_dedupe_until(conn: &mut DbConnection, recipient: &str) -> Result<()> {
        diesel::update(o::outbox.filter(o::recipient.eq(recipient)))
            .set(o::dedupe_until.eq(None::<i64>))
            .execute(conn)?;
        Ok(())
    }
}
