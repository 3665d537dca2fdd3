use diesel::prelude::*;

use super::DbConnection;
use crate::{Result, Track};

diesel::table! {
    scheduled_revocations (serial) {
        serial -> Text,
        track -> Text,
        due_at -> BigInt,
        reason -> BigInt,
        requested_by -> Text,
        created_at -> BigInt,
        done_at -> Nullable<BigInt>,
    }
}

use scheduled_revocations::dsl as s;

pub fn schedule(
    conn: &mut DbConnection,
    serial: &str,
    track: Track,
    due_at: i64,
    reason: u8,
    by: &str,
    now: i64,
) -> Result<()> {
    let exists: i64 = s::scheduled_revocations.filter(s::serial.eq(serial)).count().get_result(conn)?;
    if exists == 0 {
        diesel::insert_into(s::scheduled_revocations)
            .values((
                s::serial.eq(serial),
                s::track.eq(track.as_str()),
                s::due_at.eq(due_at),
                s::reason.eq(i64::from(reason)),
                s::requested_by.eq(by),
                s::created_at.eq(now),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Scheduled revocations that are due: (serial, track, reason, requested_by).
pub fn due(conn: &mut DbConnection, now: i64, limit: i64) -> Result<Vec<(String, String, i64, String)>> {
    Ok(s::scheduled_revocations
        .filter(s::done_at.is_null())
        .filter(s::due_at.le(now))
        .order(s::due_at.asc())
        .limit(limit)
        .select((s::serial, s::track, s::reason, s::requested_by))
        .load(conn)?)
}

pub fn mark_done(conn: &mut DbConnection, serial: &str, now: i64) -> Result<()> {
    diesel::update(s::scheduled_revocations.filter(s::serial.eq(serial)))
        .set(s::done_at.eq(Some(now)))
        .execute(conn)?;
    Ok(())
}

pub fn is_scheduled(conn: &mut DbConnection, serial: &str) -> Result<bool> {
    let n: i64 =
        s::scheduled_revocations.filter(s::serial.eq(serial)).filter(s::done_at.is_null()).count().get_result(conn)?;
    Ok(n > 0)
}
