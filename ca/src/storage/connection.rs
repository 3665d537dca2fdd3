//! One connection type for both backends, a pool that opens the right one from the URL's
//! scheme, and the transaction wrapper every write goes through.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::pg::PgConnection;
use diesel::r2d2::{self, ManageConnection, Pool};
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::group_commit::{Checkpointer, GroupCommit, Shared};
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
    /// SQLite commits are made durable by `GroupCommit`, so COMMIT itself need not fsync.
    grouped: bool,
}

/// A pooled connection can skip the check at checkout for this long after a call on it last
/// succeeded (HikariCP's `aliveBypassWindowMs` does the same). Checking every checkout cost a
/// PostgreSQL round trip per CA call, a third of all statements (BENCHMARKS.md).
const PROVEN_FOR: Duration = Duration::from_millis(500);

/// A connection in the pool, with when a call on it last succeeded: `None` when it is new, or
/// its last call failed, which may mean the server went away.
pub(crate) struct Pooled {
    conn: DbConnection,
    proven: Option<std::time::Instant>,
}

impl Pooled {
    /// Records how a call on this connection went: a success proves it, and an internal error
    /// may mean trouble with it. A domain error (`NotFound`, a conflict) proves nothing either
    /// way, since a call may have turned a database error into one.
    fn record<T>(&mut self, outcome: &Result<T>) {
        match outcome {
            Ok(_) => self.proven = Some(std::time::Instant::now()),
            Err(e) if e.kind == crate::ErrorKind::Internal => self.proven = None,
            Err(_) => {}
        }
    }
}

impl std::ops::Deref for Pooled {
    type Target = DbConnection;

    fn deref(&self) -> &DbConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut DbConnection {
        &mut self.conn
    }
}

impl ManageConnection for Manager {
    type Connection = Pooled;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<Pooled, r2d2::Error> {
        let conn = self.open()?;
        Ok(Pooled { conn, proven: None })
    }

    /// Run at checkout on PostgreSQL, whose connections can go stale (a server restart): a
    /// round trip, unless a call on the connection succeeded within `PROVEN_FOR`.
    fn is_valid(&self, conn: &mut Pooled) -> Result<(), r2d2::Error> {
        if conn.proven.is_some_and(|at| at.elapsed() < PROVEN_FOR) {
            return Ok(());
        }
        conn.conn.batch_execute("SELECT 1").map_err(r2d2::Error::QueryError)?;
        conn.proven = Some(std::time::Instant::now());
        Ok(())
    }

    /// A connection whose transaction manager was left broken (a panic inside a transaction)
    /// is dropped rather than returned to the pool.
    fn has_broken(&self, conn: &mut Pooled) -> bool {
        diesel::r2d2::R2D2Connection::is_broken(&mut conn.conn)
    }
}

impl Manager {
    fn open(&self) -> Result<DbConnection, r2d2::Error> {
        match self.backend {
            Backend::Postgres => {
                PgConnection::establish(&self.url).map(DbConnection::Postgresql).map_err(r2d2::Error::ConnectionError)
            }
            Backend::Sqlite => {
                let path = self.url.strip_prefix("sqlite://").unwrap_or(&self.url);
                let mut conn = SqliteConnection::establish(path).map_err(r2d2::Error::ConnectionError)?;
                // WAL lets readers run beside the one writer. Every commit is durable before
                // the response that depends on it leaves: through `GroupCommit` for a database
                // file (NORMAL: COMMIT writes the log, a shared fsync follows), or by COMMIT's
                // own fsync (FULL) otherwise.
                // Under group commit the log is checkpointed by `Checkpointer`, off the threads
                // that commit; otherwise by SQLite, at the commit that crosses its threshold.
                let (synchronous, autocheckpoint) = if self.grouped { ("NORMAL", 0) } else { ("FULL", 1000) };
                conn.batch_execute(&format!(
                    "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; \
                     PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = {autocheckpoint};"
                ))
                .map_err(r2d2::Error::QueryError)?;
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }
}

pub struct Storage {
    pool: Pool<Manager>,
    backend: Backend,
    /// SQLite has one writer at a time; taking the turn in process queues this process's
    /// writers without SQLite's busy-wait sleeps. PostgreSQL needs no such lock. The
    /// checkpointer takes it too, for the short last pass of each checkpoint.
    sqlite_writer: Arc<parking_lot::Mutex<()>>,
    /// For a SQLite database file: the connection every call tries first (`Storage::checkout`).
    primary: Option<Primary>,
    /// Present for a SQLite database file: how its commits become durable...
    group: Option<GroupCommit>,
    /// ...and how its log is checkpointed.
    checkpointer: Option<Checkpointer>,
}

/// Group commit on a SQLite database file, since start (`Storage::commit_counts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitCounts {
    /// Write transactions committed.
    pub commits: u64,
    /// fsyncs of the log that made them durable.
    pub syncs: u64,
    /// Checkpoints of the log into the database.
    pub checkpoints: u64,
}

/// The file of a SQLite URL, when it is a plain path (not `:memory:` or a `file:` URI).
fn sqlite_file(url: &str) -> Option<&str> {
    let path = url.strip_prefix("sqlite://").unwrap_or(url);
    (!path.is_empty() && path != ":memory:" && !path.starts_with("file:")).then_some(path)
}

impl Storage {
    pub fn open(url: &str, max_connections: u32) -> Result<Storage> {
        let backend = Backend::of_url(url);
        let file = match backend {
            Backend::Sqlite => sqlite_file(url),
            Backend::Postgres => None,
        };
        let manager = Manager { url: url.to_string(), backend, grouped: file.is_some() };
        let pool = Pool::builder()
            .max_size(max_connections)
            // A SQLite connection is a local file and cannot go stale; checking each checkout
            // with a query only costs time. A PostgreSQL one can (a server restart, say).
            .test_on_check_out(backend == Backend::Postgres)
            // Nor does it need recycling. Closing them all at once (they would all expire
            // together) would also make SQLite checkpoint and delete the log under load.
            .max_lifetime(if backend == Backend::Postgres { Some(Duration::from_secs(30 * 60)) } else { None })
            .idle_timeout(if backend == Backend::Postgres { Some(Duration::from_secs(10 * 60)) } else { None })
            .connection_timeout(Duration::from_secs(10))
            .build(manager)
            .map_err(|e| Error::new(crate::ErrorKind::Internal, format!("cannot open the database: {e}")))?;
        let mut storage = Storage {
            pool,
            backend,
            sqlite_writer: Arc::new(parking_lot::Mutex::new(())),
            primary: None,
            group: None,
            checkpointer: None,
        };
        storage.migrate()?;
        if let Some(file) = file {
            // The log exists now: the pool's connections opened the database in WAL mode and
            // the migrations (or the check that none is pending) read it.
            let group = GroupCommit::open(file)?;
            group.sync_now()?;
            storage.checkpointer =
                Some(Checkpointer::start(file, group.shared().clone(), storage.sqlite_writer.clone())?);
            storage.group = Some(group);
            // The primary keeps one connection for good; with a pool of one, every other call
            // would wait out the pool's timeout for it.
            if max_connections >= 2 {
                storage.primary = Some(Primary::default());
            }
        }
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
        let result = match &mut conn.conn {
            DbConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|_| ()),
            DbConnection::Postgresql(c) => c.run_pending_migrations(POSTGRES_MIGRATIONS).map(|_| ()),
        };
        result.map_err(|e| Error::new(crate::ErrorKind::Internal, format!("database migrations failed: {e}")))
    }

    /// Runs `f` outside a transaction, for reads. What it returns may rest on commits it saw;
    /// it is returned once those are durable.
    pub fn read<T>(&self, f: impl FnOnce(&mut DbConnection) -> Result<T>) -> Result<T> {
        let mut conn = self.checkout()?;
        let outcome = f(&mut conn);
        conn.record(&outcome);
        let value = outcome?;
        drop(conn);
        if let Some(group) = &self.group {
            owe_or_wait(group, group.visible())?;
        }
        Ok(value)
    }

    /// Whether the front end should run its calls in place, on its own executor thread, instead
    /// of handing each to a blocking pool: on SQLite a call is microseconds of local work, and
    /// the hand-offs cost more than the call (see BENCHMARKS.md). The durability wait, the one
    /// slow part, is taken out of the call and awaited (`in_place`). On PostgreSQL every query
    /// is a network round trip, so calls stay on the blocking pool.
    pub fn runs_in_place(&self) -> bool {
        self.backend == Backend::Sqlite
    }

    /// Runs `f` (which may make any number of reads and writes) on this thread, without waiting
    /// for the commits it writes or sees to reach the disk; the `Durability` returned stands
    /// for that wait, and the caller must await it before it shows anything of the result.
    pub fn in_place<T>(&self, f: impl FnOnce() -> T) -> (T, Durability) {
        let Some(group) = &self.group else {
            return (f(), Durability { owed: None });
        };
        let scope = OwedScope::enter(group.shared());
        let value = f();
        let seq = scope.leave();
        let owed = (seq > 0).then(|| (group.shared().clone(), seq));
        (value, Durability { owed })
    }

    /// Runs a read in place, on the caller's thread, if SQLite has a connection free at once;
    /// `None` otherwise (and always on PostgreSQL, where every query is a round trip), for the
    /// caller to take the ordinary path. It does not wait for the durability of what it sees,
    /// so it is only for reads whose result fails closed if a power loss takes a commit back:
    /// the account behind a request, which at worst is refused as deactivated a moment early.
    pub fn read_in_place<T>(&self, f: impl FnOnce(&mut DbConnection) -> Result<T>) -> Option<Result<T>> {
        if self.backend != Backend::Sqlite {
            return None;
        }
        let mut conn = match self.primary() {
            Some(primary) => primary,
            None => Checkout::Pool(self.pool.try_get()?),
        };
        Some(f(&mut conn))
    }

    /// For a SQLite database file: commits since start, the fsyncs of the log that made them
    /// durable, and the checkpoints of the log.
    pub fn commit_counts(&self) -> Option<CommitCounts> {
        self.group.as_ref().map(|g| CommitCounts {
            commits: g.commits(),
            syncs: g.syncs(),
            checkpoints: g.checkpoints(),
        })
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
                let DbConnection::Postgresql(pg) = &mut conn.conn else {
                    return Err(Error::internal("PostgreSQL pool returned another connection"));
                };
                let outcome = pg
                    .transaction::<bool, TxError, _>(|tx| {
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
                    });
                conn.record(&outcome);
                outcome
            }
        }
    }

    /// Runs `f` in one transaction: everything it writes (state, audit, outbox) commits
    /// together or not at all.
    pub fn write<T>(&self, f: impl FnOnce(&mut DbConnection) -> Result<T>) -> Result<T> {
        match self.backend {
            Backend::Sqlite => {
                // A write inside another call on this thread would wait for the primary that
                // call holds (or, with the turn taken first, hold the turn while another
                // writer, holding nothing else, waits for that primary): a deadlock either
                // way. No call nests one; this keeps it so, before anything is taken.
                if self.primary.as_ref().is_some_and(Primary::held_here) {
                    return Err(Error::internal("a write was started inside another storage call"));
                }
                let writing = self.group.as_ref().map(|g| WriterGuard::enter(g.shared()));
                let turn = self.sqlite_writer.lock();
                let mut conn = self.checkout_for_write()?;
                let outcome = immediate_transaction(&mut conn, self.group.as_ref(), f);
                drop(turn);
                drop(writing);
                let (value, seq) = outcome?;
                drop(conn);
                if let (Some(group), Some(seq)) = (&self.group, seq) {
                    owe_or_wait(group, seq)?;
                }
                Ok(value)
            }
            Backend::Postgres => {
                let mut conn = self.pool.get()?;
                let outcome =
                    conn.transaction::<T, TxError, _>(|tx| f(tx).map_err(TxError::Domain)).map_err(|e| match e {
                        TxError::Domain(e) => e,
                        TxError::Diesel(e) => Error::from(e),
                    });
                conn.record(&outcome);
                outcome
            }
        }
    }
}

impl Storage {
    /// PostgreSQL only: runs `f`, which must write with exactly one statement, outside a
    /// transaction. A single statement commits atomically by itself, and on PostgreSQL BEGIN
    /// and COMMIT are two round trips more. On SQLite, where a transaction costs no round trip
    /// and commits are made durable by group commit, callers use `write`; this refuses.
    pub fn autocommit<T>(&self, f: impl FnOnce(&mut PgConnection) -> Result<T>) -> Result<T> {
        if self.backend != Backend::Postgres {
            return Err(Error::internal("autocommit is for PostgreSQL; SQLite writes go through write"));
        }
        let mut conn = self.pool.get()?;
        let DbConnection::Postgresql(pg) = &mut conn.conn else {
            return Err(Error::internal("the PostgreSQL pool returned another connection"));
        };
        let outcome = f(pg);
        conn.record(&outcome);
        outcome
    }
}

impl Storage {
    /// The primary connection if no other call holds it, else one from the pool.
    fn checkout(&self) -> Result<Checkout<'_>> {
        match self.primary() {
            Some(primary) => Ok(primary),
            None => Ok(Checkout::Pool(self.pool.get()?)),
        }
    }

    /// The primary connection for a write (which holds the writer turn), so that every write
    /// goes through it and its page cache stays valid. A read holding it is waited for, parked,
    /// but only for `PRIMARY_WAIT`: a read on the request path takes microseconds, and a long
    /// one (a CRL's revoked certificates, the dashboard's counts) must not hold up the writers,
    /// so past that the write takes a pool connection.
    fn checkout_for_write(&self) -> Result<Checkout<'_>> {
        let Some(primary) = self.primary.as_ref() else {
            return Ok(Checkout::Pool(self.pool.get()?));
        };
        let Some(mut held) = primary.conn.try_lock_for(PRIMARY_WAIT) else {
            return Ok(Checkout::Pool(self.pool.get()?));
        };
        if held.is_none() {
            *held = Some(self.pool.get()?);
        }
        Ok(Checkout::Primary(PrimaryGuard::new(primary, held)))
    }

    /// The primary connection, if this is a SQLite database file and no other call holds it.
    fn primary(&self) -> Option<Checkout<'_>> {
        let primary = self.primary.as_ref()?;
        let mut held = primary.conn.try_lock()?;
        if held.is_none() {
            *held = Some(self.pool.try_get()?);
        }
        Some(Checkout::Primary(PrimaryGuard::new(primary, held)))
    }
}

/// How long a write waits for the primary connection before it takes one from the pool.
const PRIMARY_WAIT: Duration = Duration::from_millis(5);

/// The connection every call on a SQLite database file tries first (`Storage::checkout`).
/// parking_lot's mutex, for its timed lock; it has no poisoning, and a broken connection is
/// dropped by `PrimaryGuard` as a panic unwinds.
#[derive(Default)]
struct Primary {
    conn: parking_lot::Mutex<Option<r2d2::PooledConnection<Manager>>>,
}

impl Primary {
    /// Whether this thread holds this store's primary connection.
    fn held_here(&self) -> bool {
        HOLDS_PRIMARY.get() == self as *const Primary as usize
    }
}

/// A connection for one call: the primary, or one from the pool.
enum Checkout<'a> {
    Primary(PrimaryGuard<'a>),
    Pool(r2d2::PooledConnection<Manager>),
}

impl std::ops::Deref for Checkout<'_> {
    type Target = Pooled;

    fn deref(&self) -> &Pooled {
        match self {
            Checkout::Primary(p) => p.held.as_ref().expect("a held primary connection is present"),
            Checkout::Pool(c) => c,
        }
    }
}

impl std::ops::DerefMut for Checkout<'_> {
    fn deref_mut(&mut self) -> &mut Pooled {
        match self {
            Checkout::Primary(p) => p.held.as_mut().expect("a held primary connection is present"),
            Checkout::Pool(c) => c,
        }
    }
}

/// The held primary connection. A connection left broken (a panic inside a transaction,
/// which leaves it open and holding SQLite's write lock) goes back to the pool as it is let
/// go, which drops it, so the lock is given up at once; the next call takes a fresh one.
struct PrimaryGuard<'a> {
    held: parking_lot::MutexGuard<'a, Option<r2d2::PooledConnection<Manager>>>,
    /// What `HOLDS_PRIMARY` said before, put back on drop.
    previous: usize,
}

thread_local! {
    /// The primary this thread holds (its address, 0 for none), so that a write nested in a
    /// call holding that store's primary is refused (`Storage::write`), and only for that store.
    static HOLDS_PRIMARY: Cell<usize> = const { Cell::new(0) };
}

impl<'a> PrimaryGuard<'a> {
    fn new(
        primary: &Primary,
        held: parking_lot::MutexGuard<'a, Option<r2d2::PooledConnection<Manager>>>,
    ) -> PrimaryGuard<'a> {
        let previous = HOLDS_PRIMARY.replace(primary as *const Primary as usize);
        PrimaryGuard { held, previous }
    }
}

impl Drop for PrimaryGuard<'_> {
    fn drop(&mut self) {
        HOLDS_PRIMARY.set(self.previous);
        if let Some(conn) = self.held.as_mut() {
            if diesel::r2d2::R2D2Connection::is_broken(&mut conn.conn) {
                self.held.take();
            }
        }
    }
}

/// A SQLite write transaction that takes the write lock at `BEGIN IMMEDIATE`, before its first
/// read. A deferred transaction reads first and upgrades at its first write; in WAL mode an
/// upgrade whose read snapshot is no longer the newest fails at once with SQLITE_BUSY_SNAPSHOT
/// ("database is locked"), which no busy timeout retries. Taking the lock first makes the
/// snapshot the newest by construction. With group commit, the commit's number comes back
/// with the value, for the caller to wait on once it has given up its turn.
fn immediate_transaction<T>(
    conn: &mut DbConnection,
    group: Option<&GroupCommit>,
    f: impl FnOnce(&mut DbConnection) -> Result<T>,
) -> Result<(T, Option<u64>)> {
    fn sqlite(conn: &mut DbConnection) -> Result<&mut SqliteConnection> {
        match conn {
            DbConnection::Sqlite(c) => Ok(c),
            DbConnection::Postgresql(_) => Err(Error::internal("a SQLite transaction on a PostgreSQL connection")),
        }
    }
    AnsiTransactionManager::begin_transaction_sql(sqlite(conn)?, "BEGIN IMMEDIATE")?;
    match f(conn) {
        Ok(value) => {
            let seq = match group.map(|g| g.begin_commit()).transpose() {
                Ok(seq) => seq,
                Err(e) => {
                    let _ = AnsiTransactionManager::rollback_transaction(sqlite(conn)?);
                    return Err(e);
                }
            };
            let committed = AnsiTransactionManager::commit_transaction(sqlite(conn)?);
            if let (Some(group), Some(seq)) = (group, seq) {
                group.end_commit(seq);
            }
            committed?;
            Ok((value, seq))
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

thread_local! {
    /// While a call runs in place (`Storage::in_place`): the store it runs against (its group
    /// commit's address) and the newest commit its reads and writes rest on so far.
    static OWED: Cell<Option<(usize, u64)>> = const { Cell::new(None) };
}

fn group_id(shared: &Arc<Shared>) -> usize {
    Arc::as_ptr(shared) as usize
}

/// Inside an in-place call on this store, adds `seq` to what the call owes; anywhere else,
/// waits here until `seq` is durable.
fn owe_or_wait(group: &GroupCommit, seq: u64) -> Result<()> {
    let id = group_id(group.shared());
    let deferred = OWED.with(|owed| match owed.get() {
        Some((owner, so_far)) if owner == id => {
            owed.set(Some((owner, so_far.max(seq))));
            true
        }
        _ => false,
    });
    if deferred {
        Ok(())
    } else {
        group.wait_durable(seq)
    }
}

/// Counts a write transaction as under way for group commit's syncer, until dropped (also on
/// an error or a panic).
struct WriterGuard<'a>(&'a Shared);

impl<'a> WriterGuard<'a> {
    fn enter(shared: &'a Arc<Shared>) -> WriterGuard<'a> {
        shared.writer_entered();
        WriterGuard(shared)
    }
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        self.0.writer_left();
    }
}

/// Marks this thread as running an in-place call; dropping it (also by a panic) puts back what
/// was there, so no later call on the thread skips its durability wait.
struct OwedScope {
    previous: Option<(usize, u64)>,
    left: bool,
}

impl OwedScope {
    fn enter(shared: &Arc<Shared>) -> OwedScope {
        let previous = OWED.with(|owed| owed.replace(Some((group_id(shared), 0))));
        OwedScope { previous, left: false }
    }

    /// The newest commit the call owes.
    fn leave(mut self) -> u64 {
        self.left = true;
        OWED.with(|owed| owed.replace(self.previous)).map_or(0, |(_, seq)| seq)
    }
}

impl Drop for OwedScope {
    fn drop(&mut self) {
        if !self.left {
            OWED.with(|owed| owed.set(self.previous));
        }
    }
}

/// What an in-place call still owes before its result may be shown: that the commits it wrote
/// or read are on disk.
#[must_use = "a result of an in-place call may be shown only once its durability is awaited"]
pub struct Durability {
    owed: Option<(Arc<Shared>, u64)>,
}

impl Durability {
    /// Waits, without blocking the thread, until everything the call rests on is durable.
    pub async fn wait(self) -> Result<()> {
        match self.owed {
            Some((group, seq)) => group.wait_durable_async(seq).await,
            None => Ok(()),
        }
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

    /// A store on a fresh database file, with one table `t` to write to.
    fn store_with_table(connections: u32) -> (tempfile::TempDir, Storage) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dualca.sqlite");
        let storage = Storage::open(path.to_str().unwrap(), connections).unwrap();
        storage.write(|conn| Ok(conn.batch_execute("CREATE TABLE t (x INTEGER NOT NULL)")?)).unwrap();
        (dir, storage)
    }

    fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
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

    /// Concurrent writers on one database file all commit, each durable when its write returns
    /// (the last fsync covers the last commit), and no more fsyncs run than commits.
    #[test]
    fn concurrent_writes_share_fsyncs() {
        let (_dir, storage) = store_with_table(8);
        let before = storage.commit_counts().expect("a database file commits in groups");
        let (commits_before, syncs_before) = (before.commits, before.syncs);
        std::thread::scope(|s| {
            for worker in 0..8 {
                let storage = &storage;
                s.spawn(move || {
                    for i in 0..25 {
                        storage
                            .write(|conn| Ok(conn.batch_execute(&format!("INSERT INTO t (x) VALUES ({worker}{i})"))?))
                            .unwrap();
                        let group = storage.group.as_ref().unwrap();
                        assert!(group.durable() >= 1);
                    }
                });
            }
        });
        assert_eq!(storage.read(count).unwrap(), 200);
        let CommitCounts { commits, syncs, .. } = storage.commit_counts().unwrap();
        assert_eq!(commits - commits_before, 200);
        assert!(syncs > syncs_before && syncs - syncs_before <= 200, "{} fsyncs for 200 commits", syncs - syncs_before);
        let group = storage.group.as_ref().unwrap();
        assert_eq!(group.durable(), commits, "the last commit is durable");
        eprintln!("200 concurrent commits, {} fsyncs", syncs - syncs_before);
    }

    /// The pool's connections leave checkpoints to the checkpointer, which moves the log into
    /// the database file once the writes stop: a copy of the database file alone, without its
    /// log, holds every row.
    #[test]
    fn the_checkpointer_moves_the_log_into_the_database() {
        #[derive(diesel::QueryableByName)]
        struct Setting {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            wal_autocheckpoint: i64,
        }
        let (dir, storage) = store_with_table(2);
        let setting =
            storage.read(|conn| Ok(diesel::sql_query("PRAGMA wal_autocheckpoint").get_result::<Setting>(conn)?));
        assert_eq!(setting.unwrap().wal_autocheckpoint, 0, "no checkpoint inside a COMMIT");
        for x in 0..20 {
            storage.write(|conn| Ok(conn.batch_execute(&format!("INSERT INTO t (x) VALUES ({x})"))?)).unwrap();
        }
        let before = storage.commit_counts().unwrap().checkpoints;
        // Bounded: the checkpointer runs within CHECKPOINT_IDLE plus a poll of the last write.
        for _ in 0..100 {
            if storage.commit_counts().unwrap().checkpoints > before {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(storage.commit_counts().unwrap().checkpoints > before, "no checkpoint within 5 s");
        let copy = dir.path().join("copy.sqlite");
        std::fs::copy(dir.path().join("dualca.sqlite"), &copy).unwrap();
        let alone = Storage::open(copy.to_str().unwrap(), 1).unwrap();
        assert_eq!(alone.read(count).unwrap(), 20, "every row is in the database file");
    }

    /// Under a steady stream of writes and reads the log still starts over after each
    /// checkpoint instead of growing: 3 000 commits of two pages or more would make a log of
    /// some 24 MiB if it never did.
    #[test]
    fn the_log_stays_bounded_under_steady_writes() {
        let (dir, storage) = store_with_table(4);
        let wal = dir.path().join("dualca.sqlite-wal");
        let before = storage.commit_counts().unwrap().checkpoints;
        let writing = std::sync::atomic::AtomicBool::new(true);
        let mut largest = 0;
        std::thread::scope(|s| {
            let (storage, writing) = (&storage, &writing);
            s.spawn(move || {
                for x in 0..3000 {
                    storage.write(|conn| Ok(conn.batch_execute(&format!("INSERT INTO t (x) VALUES ({x})"))?)).unwrap();
                }
                writing.store(false, std::sync::atomic::Ordering::SeqCst);
            });
            s.spawn(move || {
                while writing.load(std::sync::atomic::Ordering::SeqCst) {
                    storage.read(count).unwrap();
                }
            });
            while writing.load(std::sync::atomic::Ordering::SeqCst) {
                largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let checkpoints = storage.commit_counts().unwrap().checkpoints - before;
        assert!(checkpoints >= 3, "{checkpoints} checkpoints in 3000 commits");
        assert!(largest < 8 << 20, "the log reached {largest} bytes");
        eprintln!("3000 commits: {checkpoints} checkpoints, log at most {largest} bytes");
    }

    /// An in-place call's writes are not waited for inside the call (nobody has asked the log
    /// to be synced yet); awaiting its `Durability` makes them durable, through the syncer
    /// thread, without a blocking waiter.
    #[test]
    fn an_in_place_write_is_durable_once_awaited() {
        let (_dir, storage) = store_with_table(2);
        let group = storage.group.as_ref().unwrap();
        let (syncs_before, durable_before) = (group.syncs(), group.durable());
        let (written, durability) = storage.in_place(|| {
            storage.write(|conn| Ok(conn.batch_execute("INSERT INTO t (x) VALUES (1)")?))?;
            storage.write(|conn| Ok(conn.batch_execute("INSERT INTO t (x) VALUES (2)")?))?;
            storage.read(count)
        });
        assert_eq!(written.unwrap(), 2);
        assert_eq!(group.commits(), durable_before + 2, "both commits are in the log");
        assert_eq!(group.durable(), durable_before, "nothing was synced inside the call");
        assert_eq!(group.syncs(), syncs_before);
        block_on(durability.wait()).unwrap();
        assert_eq!(group.durable(), group.commits(), "awaited: both commits are durable");
        assert!(group.syncs() > syncs_before);
    }

    /// The syncer waits for writers under way before it syncs, but only briefly: a writer that
    /// stays in its transaction does not hold up the durability of a commit made before it.
    #[test]
    fn the_syncer_does_not_wait_for_a_writer_that_stays() {
        let (_dir, storage) = store_with_table(4);
        let group = storage.group.as_ref().unwrap();
        let ((), durability) = storage.in_place(|| {
            storage.write(|conn| Ok(conn.batch_execute("INSERT INTO t (x) VALUES (1)")?)).unwrap();
        });
        let first = group.commits();
        let (entered, has_entered) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        std::thread::scope(|s| {
            let storage = &storage;
            let staying = s.spawn(move || {
                storage.write(|conn| {
                    entered.send(()).unwrap();
                    let _ = released.recv_timeout(Duration::from_secs(30));
                    Ok(conn.batch_execute("INSERT INTO t (x) VALUES (2)")?)
                })
            });
            has_entered.recv().unwrap();
            block_on(durability.wait()).unwrap();
            assert!(group.durable() >= first, "the first commit is durable while the other writer stays");
            assert_eq!(group.commits(), first, "the other writer has not committed");
            release.send(()).unwrap();
            staying.join().unwrap().unwrap();
        });
        assert_eq!(storage.read(count).unwrap(), 2);
    }

    /// A call that panics in place, inside a write transaction, leaves the store and the
    /// thread as it found them: the transaction is rolled back, the writer's turn and the
    /// connection are given back, and later writes on the thread wait for their own durability
    /// again.
    #[test]
    fn a_panic_in_place_does_not_leave_writes_unsynced() {
        let (_dir, storage) = store_with_table(2);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = storage.in_place(|| {
                storage.write(|conn| -> Result<()> {
                    conn.batch_execute("INSERT INTO t (x) VALUES (7)")?;
                    panic!("a handler bug")
                })
            });
        }));
        assert!(panicked.is_err());
        assert_eq!(storage.read(count).unwrap(), 0, "the panicked transaction was rolled back");
        storage.write(|conn| Ok(conn.batch_execute("INSERT INTO t (x) VALUES (1)")?)).unwrap();
        assert_eq!(storage.read(count).unwrap(), 1);
        let group = storage.group.as_ref().unwrap();
        assert_eq!(group.durable(), group.commits(), "an ordinary write returned only once durable");
    }

    /// A write on the primary connection that panics must give up SQLite's write lock as it
    /// unwinds, not when this store next uses the connection: another process's write gets
    /// through (it would wait out its 10 s busy timeout and fail otherwise).
    #[test]
    fn a_panic_on_the_primary_releases_the_write_lock_at_once() {
        let (dir, storage) = store_with_table(2);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = storage.write(|conn| -> Result<()> {
                conn.batch_execute("INSERT INTO t (x) VALUES (7)")?;
                panic!("a handler bug")
            });
        }));
        assert!(panicked.is_err());
        let other = Storage::open(dir.path().join("dualca.sqlite").to_str().unwrap(), 2).unwrap();
        other.write(|conn| Ok(conn.batch_execute("INSERT INTO t (x) VALUES (1)")?)).unwrap();
        assert_eq!(storage.read(count).unwrap(), 1);
        storage.write(|conn| Ok(conn.batch_execute("INSERT INTO t (x) VALUES (2)")?)).unwrap();
        assert_eq!(other.read(count).unwrap(), 2);
    }

    /// Every call tries the primary connection first. A read that finds it held, here by a
    /// write transaction still open on another thread, takes a pool connection instead of
    /// waiting, and sees only what is committed.
    #[test]
    fn a_read_does_not_wait_for_the_primary() {
        let (_dir, storage) = store_with_table(4);
        let (inside, entered) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        std::thread::scope(|s| {
            let storage = &storage;
            let writer = s.spawn(move || {
                storage.write(|conn| {
                    conn.batch_execute("INSERT INTO t (x) VALUES (1)")?;
                    inside.send(()).unwrap();
                    released.recv().unwrap();
                    Ok(())
                })
            });
            entered.recv().unwrap();
            assert_eq!(storage.read(count).unwrap(), 0, "the open write is not seen");
            assert_eq!(storage.read_in_place(count).unwrap().unwrap(), 0);
            release.send(()).unwrap();
            writer.join().unwrap().unwrap();
        });
        assert_eq!(storage.read(count).unwrap(), 1);
    }

    /// A long read holding the primary connection (a CRL's revoked certificates, say) does not
    /// hold up a write: the writer spins for the primary only briefly, then takes a pool
    /// connection and commits while the read is still under way.
    #[test]
    fn a_long_read_on_the_primary_does_not_hold_up_writes() {
        let (_dir, storage) = store_with_table(4);
        let (inside, entered) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let (written, committed) = mpsc::channel();
        std::thread::scope(|s| {
            let storage = &storage;
            let reader = s.spawn(move || {
                storage.read(|conn| {
                    assert!(storage.primary.as_ref().unwrap().held_here(), "the read holds the primary");
                    inside.send(()).unwrap();
                    released.recv().unwrap();
                    count(conn)
                })
            });
            entered.recv().unwrap();
            s.spawn(move || {
                let outcome = storage.write(|conn| Ok(conn.batch_execute("INSERT INTO t (x) VALUES (1)")?));
                written.send(outcome.is_ok()).unwrap();
            });
            let done = committed.recv_timeout(Duration::from_secs(5));
            release.send(()).unwrap();
            assert_eq!(done, Ok(true), "the write committed while the read held the primary");
            reader.join().unwrap().unwrap();
        });
        assert_eq!(storage.read(count).unwrap(), 1);
    }

    /// With a pool of one connection there is no primary: it would keep that connection, and
    /// every other call would wait out the pool's timeout.
    #[test]
    fn a_pool_of_one_has_no_primary() {
        let (_dir, storage) = store_with_table(1);
        assert!(storage.primary.is_none());
        storage.write(|conn| Ok(conn.batch_execute("INSERT INTO t (x) VALUES (1)")?)).unwrap();
        assert_eq!(storage.read(count).unwrap(), 1);
        assert_eq!(storage.read_in_place(count).unwrap().unwrap(), 1);
    }

    /// A write started inside a read on the same thread would wait for the primary the read
    /// holds: it is refused instead, and the thread can write once the read is over. A write on
    /// another store (another database) inside that read is not refused.
    #[test]
    fn a_write_inside_a_read_is_refused_not_deadlocked() {
        let (_dir, storage) = store_with_table(4);
        let nested = storage
            .read(|_| Ok(storage.write(|conn| Ok(conn.batch_execute("INSERT INTO t (x) VALUES (1)")?))))
            .unwrap();
        assert_eq!(nested.unwrap_err().kind, crate::ErrorKind::Internal, "the nested write is refused");
        let (_other_dir, other) = store_with_table(4);
        let elsewhere =
            storage.read(|_| Ok(other.write(|conn| Ok(conn.batch_execute("INSERT INTO t (x) VALUES (3)")?)))).unwrap();
        assert!(elsewhere.is_ok(), "a write on another store is not refused");
        storage.write(|conn| Ok(conn.batch_execute("INSERT INTO t (x) VALUES (2)")?)).unwrap();
        assert_eq!(storage.read(count).unwrap(), 1);
    }

    #[test]
    fn only_a_database_file_commits_in_groups() {
        assert_eq!(sqlite_file("sqlite:///var/lib/dualca/dualca.sqlite"), Some("/var/lib/dualca/dualca.sqlite"));
        assert_eq!(sqlite_file("./dualca-data/dualca.sqlite"), Some("./dualca-data/dualca.sqlite"));
        assert_eq!(sqlite_file(":memory:"), None);
        assert_eq!(sqlite_file("file:test?mode=memory"), None);
    }
}
