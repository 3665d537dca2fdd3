//! Assets, their identifiers, and EAB keys.

use diesel::prelude::*;

use super::schema::{asset_identifiers::dsl as ai, assets::dsl as a, eab_keys::dsl as e};
use super::{Bind, DbConnection, Fixed};
use crate::model::*;
use crate::{Error, Result};

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = super::schema::assets)]
#[diesel(treat_none_as_default_value = false)]
pub struct AssetRow {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub owner_team: String,
    pub owner_email: String,
    pub service: String,
    pub environment: String,
    pub spiffe_id: Option<String>,
    pub profile: Option<String>,
    pub status: String,
    pub compromised: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub decommissioned_at: Option<i64>,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = super::schema::eab_keys)]
#[diesel(treat_none_as_default_value = false)]
pub struct EabKeyRow {
    pub kid: String,
    pub track: String,
    pub asset_id: Option<String>,
    pub person_id: Option<String>,
    pub sealed_key: Vec<u8>,
    pub single_use: bool,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

fn into_asset(row: AssetRow, identifiers: Vec<Identifier>) -> Result<Asset> {
    let bad = |what: &str, v: &str| Error::internal(format!("stored asset {what} {v:?} is not valid"));
    Ok(Asset {
        kind: AssetKind::parse(&row.kind).ok_or_else(|| bad("kind", &row.kind))?,
        status: AssetStatus::parse(&row.status).ok_or_else(|| bad("status", &row.status))?,
        id: row.id,
        name: row.name,
        owner_team: row.owner_team,
        owner_email: row.owner_email,
        service: row.service,
        environment: row.environment,
        identifiers,
        spiffe_id: row.spiffe_id,
        profile: row.profile,
        compromised: row.compromised,
        created_at: row.created_at,
        updated_at: row.updated_at,
        decommissioned_at: row.decommissioned_at,
    })
}

/// An asset's identifiers. Inside finalize's write transaction, after `status_for_issuance`
/// has taken its turn with any change to the asset (an update replaces the identifiers in the
/// transaction that updates the asset's row), this reads them as that change left them.
pub fn identifiers_of(conn: &mut DbConnection, asset_id: &str) -> Result<Vec<Identifier>> {
    let pairs: Vec<(String, String)> = on_backend!(conn, |db| ai::asset_identifiers
        .filter(ai::asset_id.eq(asset_id))
        .order((ai::identifier_type.asc(), ai::identifier_value.asc()))
        .select((ai::identifier_type, ai::identifier_value))
        .load(db))?;
    pairs.into_iter().map(|(t, v)| identifier_from(&t, v)).collect()
}

pub fn insert(conn: &mut DbConnection, row: &AssetRow, identifiers: &[Identifier]) -> Result<()> {
    diesel::insert_into(a::assets).values(row).execute(conn)?;
    set_identifiers(conn, &row.id, identifiers)
}

pub fn update(conn: &mut DbConnection, row: &AssetRow, identifiers: &[Identifier]) -> Result<()> {
    diesel::update(a::assets.filter(a::id.eq(&row.id))).set(row).execute(conn)?;
    set_identifiers(conn, &row.id, identifiers)
}

fn set_identifiers(conn: &mut DbConnection, asset_id: &str, identifiers: &[Identifier]) -> Result<()> {
    diesel::delete(ai::asset_identifiers.filter(ai::asset_id.eq(asset_id))).execute(conn)?;
    for id in identifiers {
        diesel::insert_into(ai::asset_identifiers)
            .values((
                ai::asset_id.eq(asset_id),
                ai::identifier_type.eq(id.kind.as_str()),
                ai::identifier_value.eq(&id.value),
            ))
            .execute(conn)?;
    }
    Ok(())
}

pub fn by_name(conn: &mut DbConnection, name: &str) -> Result<Option<Asset>> {
    let Some(row) = a::assets.filter(a::name.eq(name)).select(AssetRow::as_select()).get_result(conn).optional()?
    else {
        return Ok(None);
    };
    let ids = identifiers_of(conn, &row.id)?;
    into_asset(row, ids).map(Some)
}

/// The asset with its identifiers, in one query (the asset's row comes once per identifier):
/// every order and finalize of a machine account reads its asset.
pub fn by_id(conn: &mut DbConnection, id: &str) -> Result<Option<Asset>> {
    let rows: Vec<(AssetRow, StoredIdentifier)> = on_backend!(conn, |db| a::assets
        .left_join(ai::asset_identifiers.on(ai::asset_id.eq(a::id)))
        .filter(a::id.eq(id))
        .order((ai::identifier_type.asc(), ai::identifier_value.asc()))
        .select((AssetRow::as_select(), (ai::identifier_type.nullable(), ai::identifier_value.nullable())))
        .load(db))?;
    let split = super::parent_with_children(rows.into_iter().map(|(row, (kind, value))| (row, kind.zip(value))));
    let Some((row, pairs)) = split else {
        return Ok(None);
    };
    let identifiers =
        pairs.into_iter().map(|(kind, value)| identifier_from(&kind, value)).collect::<Result<Vec<_>>>()?;
    into_asset(row, identifiers).map(Some)
}

/// An identifier as `by_id`'s join returns it: NULLs for an asset without identifiers.
type StoredIdentifier = (Option<String>, Option<String>);

fn identifier_from(kind: &str, value: String) -> Result<Identifier> {
    IdentifierKind::parse(kind)
        .map(|k| Identifier::new(k, value))
        .ok_or_else(|| Error::internal(format!("stored identifier type {kind:?}")))
}

/// Active assets other than `except` that hold `identifier`.
pub fn holders(conn: &mut DbConnection, identifier: &Identifier, except: Option<&str>) -> Result<Vec<String>> {
    let ids: Vec<String> = ai::asset_identifiers
        .filter(ai::identifier_type.eq(identifier.kind.as_str()))
        .filter(ai::identifier_value.eq(&identifier.value))
        .select(ai::asset_id)
        .load(conn)?;
    let mut names = Vec::new();
    for id in ids.into_iter().filter(|id| Some(id.as_str()) != except) {
        let row: Option<(String, String)> =
            a::assets.filter(a::id.eq(&id)).select((a::name, a::status)).get_result(conn).optional()?;
        if let Some((name, status)) = row {
            if status == AssetStatus::Active.as_str() {
                names.push(name);
            }
        }
    }
    Ok(names)
}

#[derive(Debug, Default, Clone)]
pub struct AssetFilter {
    pub status: Option<AssetStatus>,
    pub owner_team: Option<String>,
    pub service: Option<String>,
    pub environment: Option<String>,
    pub kind: Option<AssetKind>,
}

pub fn list(conn: &mut DbConnection, filter: &AssetFilter) -> Result<Vec<Asset>> {
    let mut q = a::assets.into_boxed();
    if let Some(s) = filter.status {
        q = q.filter(a::status.eq(s.as_str()));
    }
    if let Some(t) = &filter.owner_team {
        q = q.filter(a::owner_team.eq(t.clone()));
    }
    if let Some(s) = &filter.service {
        q = q.filter(a::service.eq(s.clone()));
    }
    if let Some(e) = &filter.environment {
        q = q.filter(a::environment.eq(e.clone()));
    }
    if let Some(k) = filter.kind {
        q = q.filter(a::kind.eq(k.as_str()));
    }
    let rows: Vec<AssetRow> = q.order(a::name.asc()).select(AssetRow::as_select()).load(conn)?;
    rows.into_iter()
        .map(|r| {
            let ids = identifiers_of(conn, &r.id)?;
            into_asset(r, ids)
        })
        .collect()
}

pub fn mark_decommissioned(conn: &mut DbConnection, id: &str, compromised: bool, now: i64) -> Result<bool> {
    let n = diesel::update(a::assets.filter(a::id.eq(id)).filter(a::status.eq(AssetStatus::Active.as_str())))
        .set((
            a::status.eq(AssetStatus::Decommissioned.as_str()),
            a::compromised.eq(compromised),
            a::decommissioned_at.eq(Some(now)),
            a::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

pub fn insert_eab(conn: &mut DbConnection, row: &EabKeyRow) -> Result<()> {
    diesel::insert_into(e::eab_keys).values(row).execute(conn)?;
    Ok(())
}

pub fn eab(conn: &mut DbConnection, kid: &str) -> Result<Option<EabKeyRow>> {
    Ok(on_backend!(conn, |db| e::eab_keys
        .filter(e::kid.eq(kid))
        .select(EabKeyRow::as_select())
        .get_result(db)
        .optional())?)
}

/// The asset's EAB keys, newest first, at most `limit`.
pub fn eab_keys_of_asset(conn: &mut DbConnection, asset_id: &str, limit: i64) -> Result<Vec<EabKeyRow>> {
    Ok(on_backend!(conn, |db| e::eab_keys
        .filter(e::asset_id.eq(asset_id))
        .order((e::created_at.desc(), e::kid.asc()))
        .limit(limit)
        .select(EabKeyRow::as_select())
        .load(db))?)
}

/// The inventory's lock (`advisory_lock`), taken first by every write that gives assets
/// names or identifiers, so that two of them cannot both find a name or an identifier free and
/// both take it: nothing in the schema forbids two active assets one identifier (a
/// decommissioned asset keeps its own), and a name taken twice would be a unique violation.
pub fn lock_inventory(conn: &mut DbConnection) -> Result<()> {
    super::advisory_lock(conn, 0x6475_616c_6361_0010)
}

/// Locks an asset's row for the rest of the write transaction (`lock_row`), before an update
/// reads it to write it back whole: a decommissioning that committed meanwhile would otherwise
/// be undone (the update writes the asset back active).
pub fn lock_by_name(conn: &mut DbConnection, name: &str) -> Result<()> {
    super::lock_row(conn, "SELECT 1 FROM assets WHERE name = ? FOR UPDATE", name)
}

/// Marks an EAB key used, as a compare-and-set on what its check read: only while the key is
/// unrevoked and unexpired, and a single-use key only while unused. False when another
/// transaction used, revoked or let it expire since the check: on PostgreSQL the check's read
/// does not lock the row, so two account creations racing with one single-use key would both
/// pass it, and this UPDATE, which waits for the other's commit and then re-evaluates its
/// condition, is what lets only one of them through.
pub fn mark_eab_used(conn: &mut DbConnection, kid: &str, now: i64) -> Result<bool> {
    let update = Fixed::new(
        "UPDATE eab_keys SET used_at = ? WHERE kid = ? AND revoked_at IS NULL AND expires_at > ? \
         AND (NOT single_use OR used_at IS NULL)",
        vec![Bind::NullableBigInt(Some(now)), Bind::Text(kid), Bind::BigInt(now)],
    );
    Ok(on_backend!(conn, |db| update.execute(db))? == 1)
}

pub fn revoke_asset_eab_keys(conn: &mut DbConnection, asset_id: &str, now: i64) -> Result<usize> {
    Ok(diesel::update(e::eab_keys.filter(e::asset_id.eq(asset_id)).filter(e::revoked_at.is_null()))
        .set(e::revoked_at.eq(Some(now)))
        .execute(conn)?)
}

pub fn revoke_eab(conn: &mut DbConnection, kid: &str, now: i64) -> Result<bool> {
    Ok(diesel::update(e::eab_keys.filter(e::kid.eq(kid)).filter(e::revoked_at.is_null()))
        .set(e::revoked_at.eq(Some(now)))
        .execute(conn)?
        == 1)
}

pub fn revoke_person_eab_keys(conn: &mut DbConnection, person_id: &str, now: i64) -> Result<usize> {
    Ok(diesel::update(e::eab_keys.filter(e::person_id.eq(person_id)).filter(e::revoked_at.is_null()))
        .set(e::revoked_at.eq(Some(now)))
        .execute(conn)?)
}

/// An asset's status, read inside the write transaction that is about to issue for it
/// (`fixed::row_for_issuance`): a decommissioning takes its turn before that transaction, and
/// the certificate is refused, or after it, and its sweep revokes the new certificate too. A
/// newAccount with one of the asset's EAB keys reads it the same way (`verify_eab`), so that
/// the decommissioning's sweep deactivates an account made before it.
pub fn status_for_issuance(conn: &mut DbConnection, id: &str) -> Result<Option<AssetStatus>> {
    #[derive(QueryableByName)]
    struct Status {
        #[diesel(sql_type = diesel::sql_types::Text)]
        status: String,
    }
    let found: Option<Status> = super::fixed::row_for_issuance(
        conn,
        "SELECT status FROM assets WHERE id = ? FOR SHARE",
        "SELECT status FROM assets WHERE id = ?",
        id,
    )?;
    found
        .map(|row| {
            AssetStatus::parse(&row.status).ok_or_else(|| Error::internal(format!("asset status {:?}", row.status)))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;

    use super::*;

    fn asset(id: &str) -> AssetRow {
        AssetRow {
            id: id.into(),
            name: format!("name-{id}"),
            kind: "host".into(),
            owner_team: "team".into(),
            owner_email: "team@example.test".into(),
            service: "svc".into(),
            environment: "prod".into(),
            spiffe_id: None,
            profile: None,
            status: AssetStatus::Active.as_str().into(),
            compromised: false,
            created_at: 1,
            updated_at: 1,
            decommissioned_at: None,
        }
    }

    fn eab_key(kid: &str, single_use: bool, expires_at: i64, revoked_at: Option<i64>) -> EabKeyRow {
        EabKeyRow {
            kid: kid.into(),
            track: "machine".into(),
            asset_id: Some("e1".into()),
            person_id: None,
            sealed_key: vec![0; 16],
            single_use,
            created_at: 1,
            expires_at,
            used_at: None,
            revoked_at,
        }
    }

    /// Marking an EAB key used is a compare-and-set: a single-use key once, a reusable one every
    /// time, a revoked or expired one never. On PostgreSQL, where the check before it does not
    /// lock the row, a second use of a single-use key that another transaction has taken but
    /// not yet committed waits for that commit, then fails.
    #[test]
    fn eab_keys_are_used_by_compare_and_set() {
        const NOW: i64 = 1_000;
        for storage in crate::storage::testing::storages() {
            storage.write(|conn| insert(conn, &asset("e1"), &[])).unwrap();
            for key in [
                eab_key("once", true, NOW + 60, None),
                eab_key("often", false, NOW + 60, None),
                eab_key("revoked", false, NOW + 60, Some(NOW - 1)),
                eab_key("expired", false, NOW, None),
                eab_key("raced", true, NOW + 60, None),
            ] {
                storage.write(|conn| insert_eab(conn, &key)).unwrap();
            }
            let used = |kid: &'static str| storage.write(move |conn| mark_eab_used(conn, kid, NOW)).unwrap();
            assert!(used("once"));
            assert!(!used("once"), "a single-use key is used once");
            assert!(used("often") && used("often"));
            assert!(!used("revoked"));
            assert!(!used("expired"));
            assert!(!used("unknown"));
            let stored = storage.read(|conn| eab(conn, "once")).unwrap().unwrap();
            assert_eq!(stored.used_at, Some(NOW));
            assert_eq!(storage.read(|conn| eab(conn, "revoked")).unwrap().unwrap().used_at, None);

            let Some(url) = &storage.postgres_url else { continue };
            // Another transaction takes "raced" and holds its commit back.
            let mut other = diesel::PgConnection::establish(url).unwrap();
            other.batch_execute("BEGIN; UPDATE eab_keys SET used_at = 999 WHERE kid = 'raced'").unwrap();
            std::thread::scope(|scope| {
                let second = scope.spawn(|| storage.write(|conn| mark_eab_used(conn, "raced", NOW)));
                std::thread::sleep(std::time::Duration::from_millis(200));
                assert!(!second.is_finished(), "the second use waits for the first to commit");
                other.batch_execute("COMMIT").unwrap();
                assert!(!second.join().unwrap().unwrap(), "a single-use key taken meanwhile is refused");
            });
            assert_eq!(storage.read(|conn| eab(conn, "raced")).unwrap().unwrap().used_at, Some(999));
        }
    }

    /// An update locks the asset's row before reading it (`lock_by_name`): on PostgreSQL it
    /// waits for a decommissioning under way and then reads the asset decommissioned, so it
    /// refuses instead of writing the asset back active.
    #[test]
    fn an_update_reads_a_decommissioning_under_way_once_it_commits() {
        for storage in crate::storage::testing::storages() {
            storage.write(|conn| insert(conn, &asset("u1"), &[])).unwrap();
            let status_when_locked = || {
                storage.write(|conn| {
                    lock_by_name(conn, "name-u1")?;
                    Ok(by_name(conn, "name-u1")?.map(|a| a.status))
                })
            };
            assert_eq!(status_when_locked().unwrap(), Some(AssetStatus::Active));
            let Some(url) = &storage.postgres_url else { continue };
            let mut decommission = diesel::PgConnection::establish(url).unwrap();
            decommission.batch_execute("BEGIN; UPDATE assets SET status = 'decommissioned' WHERE id = 'u1'").unwrap();
            std::thread::scope(|scope| {
                let update = scope.spawn(status_when_locked);
                std::thread::sleep(std::time::Duration::from_millis(200));
                assert!(!update.is_finished(), "the update waits for the decommissioning");
                decommission.batch_execute("COMMIT").unwrap();
                assert_eq!(update.join().unwrap().unwrap(), Some(AssetStatus::Decommissioned));
            });
        }
    }

    /// The status an issuance reads in its transaction follows decommissioning, and on
    /// PostgreSQL it holds the row: a decommissioning's UPDATE waits until the issuing
    /// transaction has committed (here it gives up after its lock_timeout), then goes through.
    #[test]
    fn issuance_reads_the_status_and_holds_off_decommissioning() {
        for storage in crate::storage::testing::storages() {
            storage.write(|conn| insert(conn, &asset("a1"), &[])).unwrap();
            storage.write(|conn| insert(conn, &asset("a2"), &[])).unwrap();
            let status = |id: &'static str| storage.write(move |conn| status_for_issuance(conn, id)).unwrap();
            assert_eq!(status("a1"), Some(AssetStatus::Active));
            assert!(storage.write(|conn| mark_decommissioned(conn, "a1", false, 2)).unwrap());
            assert_eq!(status("a1"), Some(AssetStatus::Decommissioned));
            assert_eq!(status("nope"), None);

            let Some(url) = &storage.postgres_url else { continue };
            let (held_tx, held_rx) = std::sync::mpsc::channel();
            let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
            std::thread::scope(|scope| {
                let decommissioner = scope.spawn(move || {
                    held_rx.recv().unwrap();
                    let mut other = diesel::PgConnection::establish(url).unwrap();
                    other.batch_execute("SET lock_timeout = '200ms'").unwrap();
                    let update = "UPDATE assets SET status = 'decommissioned' WHERE id = 'a2'";
                    let while_held = other.batch_execute(update);
                    done_tx.send(()).unwrap();
                    (while_held, other)
                });
                storage
                    .write(|conn| {
                        assert_eq!(status_for_issuance(conn, "a2")?, Some(AssetStatus::Active));
                        held_tx.send(()).unwrap();
                        done_rx.recv().unwrap();
                        Ok(())
                    })
                    .unwrap();
                let (while_held, mut other) = decommissioner.join().unwrap();
                let err = while_held.expect_err("the UPDATE waits for the issuing transaction");
                assert!(err.to_string().contains("lock timeout"), "{err}");
                other.batch_execute("UPDATE assets SET status = 'decommissioned' WHERE id = 'a2'").unwrap();
            });
            assert_eq!(status("a2"), Some(AssetStatus::Decommissioned));
        }
    }

    /// Finalize reads the identifiers after the status (`still_entitled`): on PostgreSQL an
    /// inventory update that holds the asset's row is waited for, and the identifiers read then
    /// are those it committed, not those of the issuing transaction's start.
    #[test]
    fn identifiers_read_after_the_status_follow_an_update_that_held_the_row() {
        use crate::model::IdentifierKind;
        let (kept, taken) = (
            Identifier::new(IdentifierKind::Dns, "kept.example"),
            Identifier::new(IdentifierKind::Dns, "taken.example"),
        );
        for storage in crate::storage::testing::storages() {
            let both = [kept.clone(), taken.clone()];
            storage.write(|conn| insert(conn, &asset("a3"), &both)).unwrap();
            assert_eq!(storage.write(|conn| identifiers_of(conn, "a3")).unwrap(), both);
            let Some(url) = &storage.postgres_url else { continue };
            let mut updater = diesel::PgConnection::establish(url).unwrap();
            updater
                .batch_execute(
                    "BEGIN; UPDATE assets SET updated_at = 2 WHERE id = 'a3';
                     DELETE FROM asset_identifiers WHERE asset_id = 'a3' AND identifier_value = 'taken.example'",
                )
                .unwrap();
            let (read_tx, read_rx) = std::sync::mpsc::channel();
            std::thread::scope(|scope| {
                let issuing = scope.spawn(|| {
                    storage.write(|conn| {
                        let status = status_for_issuance(conn, "a3")?;
                        read_tx.send(()).unwrap();
                        Ok((status, identifiers_of(conn, "a3")?))
                    })
                });
                // The issuing transaction is still waiting for the row when the update commits.
                let waited = read_rx.recv_timeout(std::time::Duration::from_millis(300));
                assert!(waited.is_err(), "the status was read while an update held the row");
                updater.batch_execute("COMMIT").unwrap();
                let (status, identifiers) = issuing.join().unwrap().unwrap();
                assert_eq!(status, Some(AssetStatus::Active));
                assert_eq!(identifiers, std::slice::from_ref(&kept));
            });
        }
    }
}
