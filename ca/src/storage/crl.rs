use diesel::prelude::*;

use super::schema::crl_state::dsl as c;
use super::DbConnection;
use crate::{Result, Track};

pub struct CrlRow {
    pub number: i64,
    pub this_update: i64,
    pub next_update: i64,
}

pub fn state(conn: &mut DbConnection, track: Track) -> Result<CrlRow> {
    let (number, this_update, next_update) = c::crl_state
        .filter(c::track.eq(track.as_str()))
        .select((c::crl_number, c::this_update, c::next_update))
        .get_result(conn)?;
    Ok(CrlRow { number, this_update, next_update })
}

pub fn der(conn: &mut DbConnection, track: Track) -> Result<(i64, Vec<u8>)> {
    Ok(c::crl_state.filter(c::track.eq(track.as_str())).select((c::crl_number, c::der)).get_result(conn)?)
}

/// Stores CRL `number` if the stored one is still `previous`; false when another writer won.
pub fn replace(
    conn: &mut DbConnection,
    track: Track,
    previous: i64,
    number: i64,
    this_update: i64,
    next_update: i64,
    der: &[u8],
) -> Result<bool> {
    let n = diesel::update(c::crl_state.filter(c::track.eq(track.as_str())).filter(c::crl_number.eq(previous)))
        .set((c::crl_number.eq(number), c::this_update.eq(this_update), c::next_update.eq(next_update), c::der.eq(der)))
        .execute(conn)?;
    Ok(n == 1)
}
