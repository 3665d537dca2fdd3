//! One connection type for both backends, a pool that opens the right one from the URL's
//! scheme, and the transaction wrapper every write goes through.

use std::sync::Mutex;
use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::pg::PgConnection;
use diesel::r2d2::{self, ManageConnection, Pool};
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::{Error, Result};

#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Backend {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

/// Opens connections by the URL's scheme. diesel's own multi-connection `establish` tries each
/// backend in turn, and SQLite accepts any string as a file name: a mistyped or unreachable
/// PostgreSQL URL would silently become a local file. This manager never falls through.
struct Manager {
    url: String,
    backend: Backend,
}

impl ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConnection, r2d2::Error> {
        match self.backend {
            Backend::Postgres => {
                PgConnection::establish(&self.url).map(DbConnection::Postgresql).map_err(r2d2::Error::ConnectionError)
            }
            Backend::Sqlite => {
                let path = self.url.strip_prefix("sqlite://").unwrap_or(&self.url);
                let mut conn = SqliteConnection::establish(path).map_err(r2d2::Error::ConnectionError)?;
                // WAL lets readers run beside the one writer; FULL sync makes every commit
                // durable before the response that depends on it leaves.
                conn.batch_execute(
                    "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                     PRAGMA foreign_keys = ON;",
                )
                .map_err(r2d2::Error::QueryError)?;
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), r2d2::Error> {
        conn.batch_execute("SELECT 1").map_err(r2d2::Error::QueryError)
    }

    /// A connection whose transaction manager was left broken (a panic inside a transaction)
    /// is dropped rather than returned to the pool.
    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        diesel::r2d2::R2D2Connection::is_broken(conn)
    }
}

pub struct Storage {
    pool: Pool<Manager>,
    backend: Backend,
    /// SQLite has one writer at a time; taking the turn in process avoids SQLITE_BUSY on
    /// upgrade from a read to a write lock. PostgreSQL needs no such lock.
    sqlite_writer: Mutex<()>,
}

impl Storage {
    pub fn open(url: &str, max_connections: u32) -> Result<Storage> {
        let backend = Backend::of_url(url);
        let manager = Manager { url: url.to_string(), backend };
        let pool = Pool::builder()
            .max_size(max_connections)
            // A SQLite connection is a local file and cannot go stale; checking each checkout
            // with a query only costs time. A PostgreSQL one can (a server restart, say).
            .test_on_check_out(backend == Backend::Postgres)
            .connection_timeout(Duration::from_secs(10))
            .build(manager)
            .map_err(|e| Error::new(crate::ErrorKind::Internal, format!("cannot open the database: {e}")))?;
        let storage = Storage { pool, backend, sqlite_writer: Mutex::new(()) };
        storage.migrate()?;
        Ok(storage)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    fn migrate(&self) -> Result<()> {
        let mut conn = self
            .pool
            .get()
            .map_err(|e| Error::new(crate::ErrorKind::Internal, format!("cannot connect to the database: {e}")))?;
        let result = match &mut *conn {
            DbConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|_| ()),
            DbConnection::Postgresql(c) => c.run_pending_migrations(POSTGRES_MIGRATIONS).map(|_| ()),
        };
        result.map_err(|e| Error::new(crate::ErrorKind::Internal, format!("database migrations failed: {e}")))
    }

    /// Runs `f` outside a transaction, for reads.
    pub fn read<T>(&self, f: impl FnOnce(&mut DbConnection) -> Result<T>) -> Result<T> {
        let mut conn = self.pool.get()?;
        f(&mut conn)
    }

    /// Runs a scheduled job in at most one process at a time: on PostgreSQL it holds a
    /// transaction-scoped advisory lock for the job's duration and skips the job when another
    /// process holds it; SQLite serves one process, which runs it directly. Returns whether it
    /// ran.
    pub fn exclusive_job(&self, key: i64, f: impl FnOnce() -> Result<()>) -> Result<bool> {
        match self.backend {
            Backend::Sqlite => f().map(|()| true),
            Backend::Postgres => {
                let mut conn = self.pool.get()?;
                let DbConnection::Postgresql(pg) = &mut *conn else {
                    return Err(Error::internal("PostgreSQL pool returned another connection"));
                };
                pg.transaction::<bool, TxError, _>(|tx| {
                    #[derive(diesel::QueryableByName)]
                    struct Locked {
                        #[diesel(sql_type = diesel::sql_types::Bool)]
                        locked: bool,
                    }
                    let got: Locked = diesel::sql_query("SELECT pg_try_advisory_xact_lock($1) AS locked")
                        .bind::<diesel::sql_types::BigInt, _>(key)
                        .get_result(tx)?;
                    if !got.locked {
                        return Ok(false);
                    }
                    f().map_err(TxError::Domain)?;
                    Ok(true)
                })
                .map_err(|e| match e {
                    TxError::Domain(e) => e,
                    TxError::Diesel(e) => Error::from(e),
                })
            }
        }
    }

    /// Runs `f` in one transaction: everything it writes (state, audit, outbox) commits
    /// together or not at all.
    pub fn write<T>(&self, f: impl FnOnce(&mut DbConnection) -> Result<T>) -> Result<T> {
        let mut conn = self.pool.get()?;
        match self.backend {
            Backend::Sqlite => {
                let _turn = self.sqlite_writer.lock().unwrap_or_else(|p| p.into_inner());
                immediate_transaction(&mut conn, f)
            }
            Backend::Postgres => {
                conn.transaction::<T, TxError, _>(|tx| f(tx).map_err(TxError::Domain)).map_err(|e| match e {
                    TxError::Domain(e) => e,
                    TxError::Diesel(e) => Error::from(e),
                })
            }
        }
    }
}

/// A SQLite write transaction that takes the write lock at `BEGIN IMMEDIATE`, before its first
/// read. A deferred transaction reads first and upgrades at its first write; in WAL mode an
/// upgrade whose read snapshot is no longer the newest fails at once with SQLITE_BUSY_SNAPSHOT
/// ("database is locked"), which no busy timeout retries. Taking the lock first makes the
/// snapshot the newest by construction.
fn immediate_transaction<T>(conn: &mut DbConnection, f: impl FnOnce(&mut DbConnection) -> Result<T>) -> Result<T> {
    fn sqlite(conn: &mut DbConnection) -> Result<&mut SqliteConnection> {
        match conn {
            DbConnection::Sqlite(c) => Ok(c),
            DbConnection::Postgresql(_) => Err(Error::internal("a SQLite transaction on a PostgreSQL connection")),
        }
    }
    AnsiTransactionManager::begin_transaction_sql(sqlite(conn)?, "BEGIN IMMEDIATE")?;
    match f(conn) {
        Ok(value) => {
            AnsiTransactionManager::commit_transaction(sqlite(conn)?)?;
            Ok(value)
        }
        Err(e) => {
            // A failed rollback leaves the connection marked broken, and the pool drops it;
            // the caller hears of the error that mattered.
            let _ = AnsiTransactionManager::rollback_transaction(sqlite(conn)?);
            Err(e)
        }
    }
}

/// diesel's transaction needs an error it can build from its own; this carries ours through.
enum TxError {
    Domain(Error),
    Diesel(diesel::result::Error),
}

impl From<diesel::result::Error> for TxError {
    fn from(e: diesel::result::Error) -> Self {
        TxError::Diesel(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }

    fn count(conn: &mut DbConnection) -> Result<i64> {
        Ok(diesel::sql_query("SELECT COUNT(*) AS n FROM t").get_result::<Count>(conn)?.n)
    }

    /// Two `Storage`s on one file stand for two processes (the server and a CLI command), which
    /// share no writer mutex. A write transaction that reads before it writes, while the other
    /// commits a write in between, used to fail at once with SQLITE_BUSY_SNAPSHOT ("database is
    /// locked"); with `BEGIN IMMEDIATE` the other waits its turn and both commit.
    #[test]
    fn a_write_that_reads_first_survives_another_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dualca.sqlite");
        let url = path.to_str().unwrap();
        let (a, b) = (Storage::open(url, 2).unwrap(), Storage::open(url, 2).unwrap());
        a.write(|conn| Ok(conn.batch_execute("CREATE TABLE t (x INTEGER NOT NULL)")?)).unwrap();
        let (has_read, read) = mpsc::channel();
        let (b_done, b_finished) = mpsc::channel();
        std::thread::scope(|s| {
            let a = &a;
            let first = s.spawn(move || {
                a.write(|conn| {
                    let before = count(conn)?;
                    has_read.send(()).unwrap();
                    // Give the other writer time to commit, if it can.
                    let _ = b_finished.recv_timeout(Duration::from_millis(300));
                    conn.batch_execute("INSERT INTO t (x) VALUES (1)")?;
                    Ok(before)
                })
            });
            read.recv().unwrap();
            let b = &b;
            let second = s.spawn(move || {
                let outcome = b.write(|conn| Ok(conn.batch_execute("INSERT INTO t (x) VALUES (2)")?));
                let _ = b_done.send(());
                outcome
            });
            assert_eq!(first.join().unwrap().unwrap(), 0);
            second.join().unwrap().unwrap();
        });
        assert_eq!(a.read(count).unwrap(), 2);
    }
}
