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

fn identifiers_of(conn: &mut DbConnection, asset_id: &str) -> Result<Vec<Identifier>> {
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

pub fn mark_eab_used(conn: &mut DbConnection, kid: &str, now: i64) -> Result<()> {
    let update = Fixed::new(
        "UPDATE eab_keys SET used_at = ? WHERE kid = ?",
        vec![Bind::NullableBigInt(Some(now)), Bind::Text(kid)],
    );
    on_backend!(conn, |db| update.execute(db))?;
    Ok(())
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
