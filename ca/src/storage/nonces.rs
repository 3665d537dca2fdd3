use diesel::prelude::*;

use diesel::sql_types::{BigInt, Bool, Nullable, Text};

use super::fixed::{Bind, Fixed};
use super::rows::AccountRow;
use super::schema::nonces::dsl as n;
use super::DbConnection;
use crate::model::Account;
use crate::{Error, Result, Track};

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

/// One round trip on PostgreSQL: redeems `spent` (true if it was there and fresh, and is now
/// gone), stores `issued` until `expires`, and reads the account `account` names, if any. Both
/// changes commit together, as one statement.
pub fn exchange(
    conn: &mut DbConnection,
    spent: &str,
    now: i64,
    issued: &str,
    expires: i64,
    account: Option<(Track, &str)>,
) -> Result<(bool, Option<Account>)> {
    let DbConnection::Postgresql(pg) = conn else {
        return Err(Error::internal("nonces are exchanged in one statement only on PostgreSQL"));
    };
    let (track, id) = account.map_or(("", None), |(track, id)| (track.as_str(), Some(id)));
    let row: Exchanged = Fixed::new(
        "WITH spent AS (DELETE FROM nonces WHERE value = ? AND expires > ? RETURNING 1), \
         issued AS (INSERT INTO nonces (value, expires) VALUES (?, ?)) \
         SELECT (SELECT count(*) FROM spent) AS redeemed, a.id, a.track, a.key_thumbprint, a.jwk, \
         a.status, a.contact, a.tos_agreed, a.eab_kid, a.created_at, a.updated_at, a.asset_id, \
         a.person_id FROM (SELECT 1) AS one LEFT JOIN accounts a ON a.id = ? AND a.track = ?",
        vec![
            Bind::Text(spent),
            Bind::BigInt(now),
            Bind::Text(issued),
            Bind::BigInt(expires),
            Bind::NullableText(id),
            Bind::Text(track),
        ],
    )
    .get_result(pg)?;
    let redeemed = row.redeemed == 1;
    let account = row.account().map(Account::try_from).transpose()?;
    Ok((redeemed, account))
}

/// `exchange`'s one row: the account's columns are all NULL when there is no such account.
#[derive(diesel::QueryableByName)]
struct Exchanged {
    #[diesel(sql_type = BigInt)]
    redeemed: i64,
    #[diesel(sql_type = Nullable<Text>)]
    id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    track: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    key_thumbprint: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    jwk: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    status: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    contact: Option<String>,
    #[diesel(sql_type = Nullable<Bool>)]
    tos_agreed: Option<bool>,
    #[diesel(sql_type = Nullable<Text>)]
    eab_kid: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    created_at: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    updated_at: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    asset_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    person_id: Option<String>,
}

impl Exchanged {
    fn account(self) -> Option<AccountRow> {
        Some(AccountRow {
            id: self.id?,
            track: self.track?,
            key_thumbprint: self.key_thumbprint?,
            jwk: self.jwk?,
            status: self.status?,
            contact: self.contact?,
            tos_agreed: self.tos_agreed?,
            eab_kid: self.eab_kid,
            created_at: self.created_at?,
            updated_at: self.updated_at?,
            asset_id: self.asset_id,
            person_id: self.person_id,
        })
    }
}
