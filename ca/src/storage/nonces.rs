use diesel::prelude::*;

use super::schema::nonces::dsl as n;
use super::DbConnection;
use crate::Result;

pub fn insert(conn: &mut DbConnection, value: &str, expires: i64) -> Result<()> {
    diesel::insert_into(n::nonces).values((n::value.eq(value), n::expires.eq(expires))).execute(conn)?;
    Ok(())
}

/// Deletes the nonce if it is there and fresh; true means it was valid and is now spent.
pub fn consume(conn: &mut DbConnection, value: &str, now: i64) -> Result<bool> {
    let deleted = diesel::delete(n::nonces.filter(n::value.eq(value)).filter(n::expires.gt(now))).execute(conn)?;
    Ok(deleted == 1)
}

pub fn purge_expired(conn: &mut DbConnection, now: i64) -> Result<usize> {
    Ok(diesel::delete(n::nonces.filter(n::expires.le(now))).execute(conn)?)
}
