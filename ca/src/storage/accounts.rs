use diesel::prelude::*;

use super::rows::AccountRow;
use super::schema::accounts::dsl as a;
use super::DbConnection;
use crate::model::{Account, AccountStatus};
use crate::{Result, Track};

pub fn insert(conn: &mut DbConnection, row: &AccountRow) -> Result<()> {
    on_backend!(conn, |c| diesel::insert_into(a::accounts).values(row).execute(c))?;
    Ok(())
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

pub fn set_key(conn: &mut DbConnection, id: &str, jwk: &str, thumbprint: &str, now: i64) -> Result<()> {
    diesel::update(a::accounts.filter(a::id.eq(id)))
        .set((a::jwk.eq(jwk), a::key_thumbprint.eq(thumbprint), a::updated_at.eq(now)))
        .execute(conn)?;
    Ok(())
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
