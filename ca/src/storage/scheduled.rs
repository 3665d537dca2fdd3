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

/// Schedules a certificate's revocation, unless it already has one: the first schedule
/// stands. One statement, so that two redeploys of one asset at once (on PostgreSQL) cannot
/// both find the serial unscheduled and the second fail on its key; its INSERT waits for the
/// first's commit, then writes nothing.
pub fn schedule(
    conn: &mut DbConnection,
    serial: &str,
    track: Track,
    due_at: i64,
    reason: u8,
    by: &str,
    now: i64,
) -> Result<()> {
    let row = (
        s::serial.eq(serial),
        s::track.eq(track.as_str()),
        s::due_at.eq(due_at),
        s::reason.eq(i64::from(reason)),
        s::requested_by.eq(by),
        s::created_at.eq(now),
    );
    on_backend!(conn, |c| diesel::insert_into(s::scheduled_revocations)
        .values(row)
        .on_conflict_do_nothing()
        .execute(c))?;
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

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;

    use super::*;

    /// A serial is scheduled once: a second schedule writes nothing and does not fail, also
    /// when (on PostgreSQL) the first is still under way in another transaction.
    #[test]
    fn a_revocation_is_scheduled_once() {
        for storage in crate::storage::testing::storages() {
            let schedule_at =
                |due: i64| storage.write(move |conn| schedule(conn, "s1", Track::Machine, due, 4, "op", 1)).unwrap();
            schedule_at(100);
            schedule_at(200);
            let due_now = storage.read(|conn| due(conn, 150, 10)).unwrap();
            assert_eq!(due_now, vec![("s1".into(), "machine".into(), 4, "op".into())], "the first schedule stands");

            let Some(url) = &storage.postgres_url else { continue };
            let mut other = diesel::PgConnection::establish(url).unwrap();
            other
                .batch_execute(
                    "BEGIN; INSERT INTO scheduled_revocations (serial, track, due_at, reason, requested_by, created_at)
                       VALUES ('s2', 'machine', 100, 4, 'other', 1)",
                )
                .unwrap();
            std::thread::scope(|scope| {
                let second =
                    scope.spawn(|| storage.write(|conn| schedule(conn, "s2", Track::Machine, 100, 4, "op", 1)));
                std::thread::sleep(std::time::Duration::from_millis(200));
                assert!(!second.is_finished(), "the INSERT waits for the one under way");
                other.batch_execute("COMMIT").unwrap();
                second.join().unwrap().expect("and writes nothing once it committed, without failing");
            });
            let by: Vec<String> = storage
                .read(|conn| {
                    Ok(s::scheduled_revocations.filter(s::serial.eq("s2")).select(s::requested_by).load(conn)?)
                })
                .unwrap();
            assert_eq!(by, vec!["other".to_string()]);
        }
    }
}
