use diesel::prelude::*;

use super::schema::revoked_tokens::dsl as t;
use super::DbConnection;
use crate::Result;

pub fn revoke(conn: &mut DbConnection, jti: &str, subject: &str, now: i64, expires_at: i64) -> Result<bool> {
    let exists: i64 = t::revoked_tokens.filter(t::jti.eq(jti)).count().get_result(conn)?;
    if exists > 0 {
        return Ok(false);
    }
    diesel::insert_into(t::revoked_tokens)
        .values((t::jti.eq(jti), t::subject.eq(subject), t::revoked_at.eq(now), t::expires_at.eq(expires_at)))
        .execute(conn)?;
    Ok(true)
}

pub fn is_revoked(conn: &mut DbConnection, jti: &str) -> Result<bool> {
    let n: i64 = t::revoked_tokens.filter(t::jti.eq(jti)).count().get_result(conn)?;
    Ok(n > 0)
}

/// Deletes revocations of tokens that expired before `expired_before`.
pub fn purge_expired(conn: &mut DbConnection, expired_before: i64) -> Result<usize> {
    Ok(diesel::delete(t::revoked_tokens.filter(t::expires_at.lt(expired_before))).execute(conn)?)
}
