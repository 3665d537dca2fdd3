//! `Fixed`: a statement whose SQL text is written out by hand, for the UPDATEs on the issuance
//! path. diesel never caches the UPDATEs it builds (their changesets may vary from call to
//! call), so SQLite parsed and planned each of them again: five per issuance. A `Fixed`
//! statement has no static query id and never calls `unsafe_to_cache_prepared`, so both
//! backends' statement caches keep it, keyed by its text and bind types.
//!
//! The price is diesel's compile-time check of table and column names; the statements are few,
//! and the end-to-end tests run each of them on both backends.

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, HasSqlType, Nullable, Text};
use diesel::{QueryResult, RunQueryDsl};

/// One bind parameter of a `Fixed` statement.
pub(crate) enum Bind<'a> {
    Text(&'a str),
    BigInt(i64),
    NullableText(Option<&'a str>),
    NullableBigInt(Option<i64>),
}

/// `sql` with one `?` for each of `binds`, in order (and no other `?`). Each `?` becomes the
/// backend's own placeholder (`?` on SQLite, `$n` on PostgreSQL).
pub(crate) struct Fixed<'a> {
    sql: &'static str,
    binds: Vec<Bind<'a>>,
}

impl<'a> Fixed<'a> {
    pub(crate) fn new(sql: &'static str, binds: Vec<Bind<'a>>) -> Fixed<'a> {
        Fixed { sql, binds }
    }
}

impl QueryId for Fixed<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Conn> RunQueryDsl<Conn> for Fixed<'_> {}

/// A `Fixed` SELECT loads rows by column name (`QueryableByName`), as `sql_query` does.
impl diesel::query_builder::Query for Fixed<'_> {
    type SqlType = diesel::sql_types::Untyped;
}

impl<DB> QueryFragment<DB> for Fixed<'_>
where
    DB: Backend + HasSqlType<Text> + HasSqlType<BigInt>,
    str: ToSql<Text, DB>,
    i64: ToSql<BigInt, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        let mut parts = self.sql.split('?');
        out.push_sql(parts.next().unwrap_or_default());
        let mut binds = self.binds.iter();
        for part in parts {
            match binds.next() {
                Some(Bind::Text(value)) => out.push_bind_param::<Text, str>(value)?,
                Some(Bind::BigInt(value)) => out.push_bind_param::<BigInt, i64>(value)?,
                Some(Bind::NullableText(value)) => out.push_bind_param::<Nullable<Text>, Option<&str>>(value)?,
                Some(Bind::NullableBigInt(value)) => out.push_bind_param::<Nullable<BigInt>, Option<i64>>(value)?,
                None => return Err(mismatch(self.sql)),
            }
            out.push_sql(part);
        }
        if binds.next().is_some() {
            return Err(mismatch(self.sql));
        }
        Ok(())
    }
}

/// One row by id, read inside a write transaction that is about to issue a certificate for
/// it, so that issuance and a change to the row take turns: `pg` locks the row `FOR SHARE` on
/// PostgreSQL (waiting for a change under way, holding back a later one until the issuing
/// transaction ends); on SQLite the write transaction (`BEGIN IMMEDIATE`) already excludes every
/// other writer, and `sqlite` is the plain read. Both take the id as their one placeholder.
pub(crate) fn row_for_issuance<T>(
    conn: &mut super::DbConnection,
    pg: &'static str,
    sqlite: &'static str,
    id: &str,
) -> crate::Result<Option<T>>
where
    T: diesel::QueryableByName<diesel::pg::Pg> + diesel::QueryableByName<diesel::sqlite::Sqlite> + 'static,
{
    use diesel::OptionalExtension;
    Ok(match conn {
        super::DbConnection::Postgresql(db) => Fixed::new(pg, vec![Bind::Text(id)]).get_result(db).optional()?,
        super::DbConnection::Sqlite(db) => Fixed::new(sqlite, vec![Bind::Text(id)]).get_result(db).optional()?,
    })
}

/// Inside a write transaction, before a row is read to be written back whole: on PostgreSQL
/// `pg` (a `SELECT … FOR UPDATE` with one placeholder, for `key`) locks it until the
/// transaction ends, so that two changes of one row take turns, the later one reading what the
/// earlier committed, instead of the later overwriting it with what it read before. On SQLite
/// nothing: its write transactions already exclude each other.
pub(crate) fn lock_row(conn: &mut super::DbConnection, pg: &'static str, key: &str) -> crate::Result<()> {
    if let super::DbConnection::Postgresql(db) = conn {
        Fixed::new(pg, vec![Bind::Text(key)]).execute(db)?;
    }
    Ok(())
}

/// On PostgreSQL, a transaction-scoped advisory lock on `key`, held until the write transaction
/// ends: for checks that span rows no single row lock covers (no two assets hold one
/// identifier). On SQLite nothing: its write transactions already exclude each other.
pub(crate) fn advisory_lock(conn: &mut super::DbConnection, key: i64) -> crate::Result<()> {
    if let super::DbConnection::Postgresql(db) = conn {
        Fixed::new("SELECT pg_advisory_xact_lock(?)", vec![Bind::BigInt(key)]).execute(db)?;
    }
    Ok(())
}

fn mismatch(sql: &str) -> diesel::result::Error {
    diesel::result::Error::QueryBuilderError(format!("placeholders and binds differ in number: {sql}").into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::connection::SimpleConnection;
    use diesel::{Connection, SqliteConnection};

    #[derive(diesel::QueryableByName, Debug, PartialEq)]
    struct Row {
        #[diesel(sql_type = Text)]
        a: String,
        #[diesel(sql_type = Nullable<Text>)]
        b: Option<String>,
        #[diesel(sql_type = Nullable<BigInt>)]
        c: Option<i64>,
    }

    /// Binds go to their placeholders in order, NULLs included, and a statement whose binds
    /// and placeholders differ in number is refused instead of run.
    #[test]
    fn binds_fill_their_placeholders_in_order() {
        let mut conn = SqliteConnection::establish(":memory:").unwrap();
        conn.batch_execute("CREATE TABLE t (a TEXT NOT NULL, b TEXT, c BIGINT); INSERT INTO t VALUES ('x', 'y', 1)")
            .unwrap();
        let update = |b: Option<&'static str>, c: Option<i64>| {
            Fixed::new(
                "UPDATE t SET b = ?, c = ? WHERE a = ?",
                vec![Bind::NullableText(b), Bind::NullableBigInt(c), Bind::Text("x")],
            )
        };
        assert_eq!(update(Some("z"), None).execute(&mut conn).unwrap(), 1);
        let read = |conn: &mut SqliteConnection| diesel::sql_query("SELECT a, b, c FROM t").get_result::<Row>(conn);
        assert_eq!(read(&mut conn).unwrap(), Row { a: "x".into(), b: Some("z".into()), c: None });
        assert_eq!(update(None, Some(7)).execute(&mut conn).unwrap(), 1);
        assert_eq!(read(&mut conn).unwrap(), Row { a: "x".into(), b: None, c: Some(7) });

        let too_few = Fixed::new("UPDATE t SET b = ? WHERE a = ?", vec![Bind::Text("q")]);
        assert!(matches!(too_few.execute(&mut conn), Err(diesel::result::Error::QueryBuilderError(_))));
        let too_many = Fixed::new("UPDATE t SET b = ?", vec![Bind::Text("q"), Bind::Text("x")]);
        assert!(matches!(too_many.execute(&mut conn), Err(diesel::result::Error::QueryBuilderError(_))));
        assert_eq!(read(&mut conn).unwrap().b, None, "nothing was written by a refused statement");
    }
}
