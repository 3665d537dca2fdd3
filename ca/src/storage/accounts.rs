use diesel::prelude::*;

use super::rows::AccountRow;
use super::schema::accounts::dsl as a;
use super::DbConnection;
use crate::model::{Account, AccountStatus};
use crate::{Result, Track};

/// Inserts an account unless its track already has an account with its key (the unique
/// `accounts_track_key`): false then, and nothing written. On PostgreSQL an INSERT that meets
/// a conflicting row another transaction has not committed yet waits for that transaction.
pub fn insert_unless_key_taken(conn: &mut DbConnection, row: &AccountRow) -> Result<bool> {
    let inserted =
        on_backend!(conn, |c| diesel::insert_into(a::accounts).values(row).on_conflict_do_nothing().execute(c))?;
    Ok(inserted == 1)
}

pub fn by_id(conn: &mut DbConnection, track: Track, id: &str) -> Result<Option<Account>> {
    on_backend!(conn, |c| a::accounts
        .filter(a::id.eq(id))
        .filter(a::track.eq(track.as_str()))
        .select(AccountRow::as_select())
        .get_result(c)
        .optional())?
    .map(Account::try_from)
    .transpose()
}

pub fn by_thumbprint(conn: &mut DbConnection, track: Track, thumbprint: &str) -> Result<Option<Account>> {
    on_backend!(conn, |c| a::accounts
        .filter(a::track.eq(track.as_str()))
        .filter(a::key_thumbprint.eq(thumbprint))
        .select(AccountRow::as_select())
        .get_result(c)
        .optional())?
    .map(Account::try_from)
    .transpose()
}

pub fn set_contact(conn: &mut DbConnection, id: &str, contact: &[String], now: i64) -> Result<()> {
    let text = serde_json::to_string(contact).unwrap_or_else(|_| "[]".into());
    diesel::update(a::accounts.filter(a::id.eq(id))).set((a::contact.eq(text), a::updated_at.eq(now))).execute(conn)?;
    Ok(())
}

pub fn set_status(conn: &mut DbConnection, id: &str, status: AccountStatus, now: i64) -> Result<()> {
    diesel::update(a::accounts.filter(a::id.eq(id)))
        .set((a::status.eq(status.as_str()), a::updated_at.eq(now)))
        .execute(conn)?;
    Ok(())
}

/// What `set_key` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyChange {
    Changed,
    /// Another key change replaced the key this one was authorized by: nothing written.
    OldKeyGone,
    /// Another account of the track holds the new key (`accounts_track_key`): on PostgreSQL,
    /// one that another transaction gave it after the caller's check. Nothing written, and on
    /// PostgreSQL the transaction is aborted.
    NewKeyTaken,
}

/// Replaces an account's key, as a compare-and-set on the key the change was authorized by.
pub fn set_key(
    conn: &mut DbConnection,
    id: &str,
    old_thumbprint: &str,
    jwk: &str,
    thumbprint: &str,
    now: i64,
) -> Result<KeyChange> {
    let changed = super::unless_duplicate(
        diesel::update(a::accounts.filter(a::id.eq(id)).filter(a::key_thumbprint.eq(old_thumbprint)))
            .set((a::jwk.eq(jwk), a::key_thumbprint.eq(thumbprint), a::updated_at.eq(now)))
            .execute(conn),
    )?;
    Ok(match changed {
        Some(1) => KeyChange::Changed,
        Some(_) => KeyChange::OldKeyGone,
        None => KeyChange::NewKeyTaken,
    })
}

/// Deactivates every valid account bound to the asset; returns their ids.
pub fn deactivate_for_asset(conn: &mut DbConnection, asset_id: &str, now: i64) -> Result<Vec<String>> {
    let ids: Vec<String> = a::accounts
        .filter(a::asset_id.eq(asset_id))
        .filter(a::status.eq(AccountStatus::Valid.as_str()))
        .select(a::id)
        .load(conn)?;
    for id in &ids {
        set_status(conn, id, AccountStatus::Deactivated, now)?;
    }
    Ok(ids)
}

/// Deactivates every valid account bound to the person; returns their ids.
pub fn deactivate_for_person(conn: &mut DbConnection, person_id: &str, now: i64) -> Result<Vec<String>> {
    let ids: Vec<String> = a::accounts
        .filter(a::person_id.eq(person_id))
        .filter(a::status.eq(AccountStatus::Valid.as_str()))
        .select(a::id)
        .load(conn)?;
    for id in &ids {
        set_status(conn, id, AccountStatus::Deactivated, now)?;
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;

    use super::*;

    use crate::storage::testing::account_row as account;

    /// A key change replaces the key it was authorized by, once: a second change signed with
    /// the same old key finds it gone and writes nothing.
    #[test]
    fn a_key_change_replaces_the_key_it_was_signed_with() {
        for storage in crate::storage::testing::storages() {
            let row = account("k1", Track::Machine, "old");
            storage.write(|conn| insert_unless_key_taken(conn, &row)).unwrap();
            let change =
                |new: &'static str| storage.write(move |conn| set_key(conn, "k1", "old", "{}", new, 2)).unwrap();
            assert_eq!(change("new-1"), KeyChange::Changed);
            assert_eq!(change("new-2"), KeyChange::OldKeyGone, "the old key is no longer the account's");
            let stored = storage.read(|conn| by_id(conn, Track::Machine, "k1")).unwrap().unwrap();
            assert_eq!(stored.key_thumbprint, "new-1");
        }
    }

    /// A key change to a key another account of the track holds writes nothing and says so,
    /// instead of failing. On PostgreSQL the holder may be another key change under way: the
    /// UPDATE waits for it and, once it committed, finds the key taken.
    #[test]
    fn a_key_change_to_a_taken_key_is_told_apart() {
        for storage in crate::storage::testing::storages() {
            for (id, thumbprint) in [("a1", "ka"), ("b1", "kb")] {
                let row = account(id, Track::Machine, thumbprint);
                assert!(storage.write(|conn| insert_unless_key_taken(conn, &row)).unwrap());
            }
            let change =
                |new: &'static str| storage.write(move |conn| set_key(conn, "a1", "ka", "{}", new, 2)).unwrap();
            assert_eq!(change("kb"), KeyChange::NewKeyTaken);
            let stored = storage.read(|conn| by_id(conn, Track::Machine, "a1")).unwrap().unwrap();
            assert_eq!(stored.key_thumbprint, "ka", "nothing written");

            let Some(url) = &storage.postgres_url else { continue };
            let mut other = diesel::PgConnection::establish(url).unwrap();
            other.batch_execute("BEGIN; UPDATE accounts SET key_thumbprint = 'kc' WHERE id = 'b1'").unwrap();
            std::thread::scope(|scope| {
                let second = scope.spawn(|| change("kc"));
                std::thread::sleep(std::time::Duration::from_millis(200));
                assert!(!second.is_finished(), "the UPDATE waits for the change under way");
                other.batch_execute("COMMIT").unwrap();
                assert_eq!(second.join().unwrap(), KeyChange::NewKeyTaken, "and finds the key taken once it committed");
            });
            let stored = storage.read(|conn| by_thumbprint(conn, Track::Machine, "kc")).unwrap().unwrap();
            assert_eq!(stored.id, "b1");
        }
    }

    /// A second account for a key its track already has is not inserted, and nothing fails; on
    /// PostgreSQL the INSERT waits for a transaction that is inserting the same key, and after
    /// its commit inserts nothing: the caller then reads that account.
    #[test]
    fn an_account_key_is_taken_once_per_track() {
        for storage in crate::storage::testing::storages() {
            let insert = |row: AccountRow| storage.write(move |conn| insert_unless_key_taken(conn, &row)).unwrap();
            assert!(insert(account("a1", Track::Machine, "k1")));
            assert!(!insert(account("a2", Track::Machine, "k1")), "the machine track has k1");
            assert!(insert(account("a3", Track::Human, "k1")), "the human track has not");
            assert!(storage.read(|conn| by_id(conn, Track::Machine, "a2")).unwrap().is_none());
            let found = storage.read(|conn| by_thumbprint(conn, Track::Machine, "k1")).unwrap().unwrap();
            assert_eq!(found.id, "a1");

            let Some(url) = &storage.postgres_url else { continue };
            let mut other = diesel::PgConnection::establish(url).unwrap();
            other
                .batch_execute(
                    "BEGIN; INSERT INTO accounts (id, track, key_thumbprint, jwk, status, contact, tos_agreed, created_at, updated_at)
                       VALUES ('b1', 'machine', 'k2', '{}', 'valid', '[]', true, 1, 1)",
                )
                .unwrap();
            std::thread::scope(|scope| {
                let second = scope.spawn(|| insert(account("b2", Track::Machine, "k2")));
                std::thread::sleep(std::time::Duration::from_millis(200));
                assert!(!second.is_finished(), "the INSERT waits for the one under way");
                other.batch_execute("COMMIT").unwrap();
                assert!(!second.join().unwrap(), "and inserts nothing once it committed");
            });
            let found = storage.read(|conn| by_thumbprint(conn, Track::Machine, "k2")).unwrap().unwrap();
            assert_eq!(found.id, "b1");
        }
    }
}
