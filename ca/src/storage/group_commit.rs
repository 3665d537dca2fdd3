//! Group commit for SQLite: one fsync of the write-ahead log for every commit that waits for
//! it, instead of one each.
//!
//! SQLite in WAL mode with `synchronous = FULL` fsyncs the log inside every COMMIT, while the
//! writer holds the one write lock, so concurrent writers pay their fsyncs one after another.
//! With `synchronous = NORMAL` a COMMIT only writes its frames to the log (the page cache); the
//! database stays consistent on power loss, but the newest commits may be lost. This module
//! gives the durability back without the queue: after its COMMIT, and after releasing the
//! write lock, a writer waits until an fsync of the log that began after its commit has
//! finished. Whoever finds no fsync under way starts one, which covers every commit finished
//! by then; the others wait for it. So each response still leaves only once what it reports
//! is on disk, and a burst of writers shares a few fsyncs.
//!
//! Reads keep the same promise: a read that may have seen a commit not yet on disk waits for
//! the fsync that covers it before its result is used (`Storage::read`), so no response shows
//! state that a power loss could take back.
//!
//! SQLite itself syncs the log before each checkpoint and the database after it, so the data
//! a checkpoint moves out of the log is durable on its own. The log file is reopened when its
//! inode changes (SQLite deletes it when the last connection closes; everything in it was
//! checkpointed by then).
//!
//! Checkpoints run on a thread of their own (`Checkpointer`), not inside the COMMIT that
//! crosses SQLite's automatic threshold: that COMMIT would copy the log's pages into the
//! database and fsync both on whatever thread made it, which for calls made in place is an
//! actix worker serving other requests.
//!
//! A failed fsync poisons the whole store: after one, the kernel may have dropped the dirty
//! pages it could not write, and a later fsync that succeeds would not bring them back. Every
//! write and read after it fails until the process restarts and SQLite recovers from the log.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::{Connection, SqliteConnection};

use crate::{Error, Result};

/// How long the syncer waits at most for writers under way before it syncs (`run_syncer`).
const LINGER: Duration = Duration::from_millis(1);

/// The checkpointer moves the log into the database after this many commits (an issuance
/// flow's commits write about 11 pages each, so the log stays near 20 MiB at most)...
const CHECKPOINT_EVERY: u64 = 500;
/// ...or once a second while fewer have come, so an idle store's log is emptied too.
const CHECKPOINT_IDLE: Duration = Duration::from_secs(1);
/// How often it looks.
const CHECKPOINT_POLL: Duration = Duration::from_millis(50);
/// How long a checkpoint's last pass waits for readers of older snapshots, holding writers.
const RESTART_WAIT: Duration = Duration::from_millis(100);

/// The group commit of one database file: the shared state, and the thread that syncs the log
/// for callers that wait asynchronously (`Durability::wait`), which must not block their
/// executor thread on an fsync. Dropping it stops that thread.
pub(super) struct GroupCommit {
    shared: Arc<Shared>,
    syncer: Option<JoinHandle<()>>,
}

pub(super) struct Shared {
    wal: Mutex<WalFile>,
    /// Commits numbered in writer order: the newest one begun (bumped just before COMMIT, so
    /// a reader that can see a commit also sees its number)...
    begun: AtomicU64,
    /// ...the newest one whose COMMIT has returned (its frames are in the log)...
    committed: AtomicU64,
    /// ...and the newest one an fsync has covered.
    durable: AtomicU64,
    /// The newest commit an asynchronous caller waits for; the syncer thread works towards it.
    requested: AtomicU64,
    /// Write transactions of this process under way (waiting for the write turn or in it).
    writers: AtomicUsize,
    /// True while the syncer waits for those writers before its fsync (`LINGER`); `linger`
    /// wakes it when the last of them leaves, and nothing else does, so a burst of commits
    /// costs it no wake-ups.
    lingering: AtomicBool,
    linger: parking_lot::Condvar,
    /// True while an fsync is under way; `changed` announces its end and each COMMIT's.
    /// parking_lot's, like the three condition variables: std's futex-based `Condvar` makes a
    /// system call for every notification, waiter or not, and most of these find none (the
    /// syncer is already syncing or lingering; on the request path nothing waits on `changed`).
    /// That was about 8 `futex` calls per issuance (BENCHMARKS.md, fourteenth run).
    syncing: parking_lot::Mutex<bool>,
    changed: parking_lot::Condvar,
    /// Wakes the syncer thread: a new request, or the end.
    wake_syncer: parking_lot::Condvar,
    stopping: AtomicBool,
    failed: AtomicBool,
    syncs: AtomicU64,
    checkpoints: AtomicU64,
    /// What asynchronous waiters watch: the newest durable commit, and whether an fsync failed.
    published: tokio::sync::watch::Sender<Published>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Published {
    durable: u64,
    failed: bool,
}

struct WalFile {
    path: PathBuf,
    file: File,
    inode: u64,
}

impl WalFile {
    fn open(path: PathBuf) -> std::io::Result<WalFile> {
        let file = File::open(&path)?;
        let inode = file.metadata()?.ino();
        Ok(WalFile { path, file, inode })
    }

    fn sync(&mut self) -> std::io::Result<()> {
        let inode = match std::fs::metadata(&self.path) {
            Ok(metadata) => metadata.ino(),
            // No log: the last connection closed, and SQLite checkpointed the log into the
            // database (and synced it) before deleting it. Everything committed is on disk.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        if inode != self.inode {
            *self = WalFile::open(self.path.clone())?;
        }
        self.file.sync_data()
    }
}

impl GroupCommit {
    /// For the database at `db_path`, whose log (`<db_path>-wal`) must exist: the caller opens
    /// it in WAL mode first.
    pub(super) fn open(db_path: &str) -> Result<GroupCommit> {
        let path = PathBuf::from(format!("{db_path}-wal"));
        let wal = WalFile::open(path.clone())
            .map_err(|e| Error::internal(format!("cannot open the SQLite log {}: {e}", path.display())))?;
        let shared = Arc::new(Shared {
            wal: Mutex::new(wal),
            begun: AtomicU64::new(0),
            committed: AtomicU64::new(0),
            durable: AtomicU64::new(0),
            requested: AtomicU64::new(0),
            writers: AtomicUsize::new(0),
            lingering: AtomicBool::new(false),
            linger: parking_lot::Condvar::new(),
            syncing: parking_lot::Mutex::new(false),
            changed: parking_lot::Condvar::new(),
            wake_syncer: parking_lot::Condvar::new(),
            stopping: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            syncs: AtomicU64::new(0),
            checkpoints: AtomicU64::new(0),
            published: tokio::sync::watch::Sender::new(Published::default()),
        });
        let for_syncer = shared.clone();
        let syncer = std::thread::Builder::new()
            .name("sqlite-log-sync".into())
            .spawn(move || for_syncer.run_syncer())
            .map_err(|e| Error::internal(format!("cannot start the SQLite log syncer: {e}")))?;
        Ok(GroupCommit { shared, syncer: Some(syncer) })
    }

    pub(super) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl std::ops::Deref for GroupCommit {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.shared
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.wake(&self.shared.wake_syncer);
        self.shared.wake(&self.shared.linger);
        if let Some(syncer) = self.syncer.take() {
            let _ = syncer.join();
        }
    }
}

impl Shared {
    /// Called by the writer, holding the write turn, just before COMMIT: its commit's number.
    pub(super) fn begin_commit(&self) -> Result<u64> {
        self.check()?;
        Ok(self.begun.fetch_add(1, Ordering::SeqCst) + 1)
    }

    /// Called by the writer, still holding the write turn, once COMMIT has returned, whether it
    /// succeeded or not (a failed one has nothing to sync, and nobody may wait for it forever).
    pub(super) fn end_commit(&self, seq: u64) {
        let guard = self.syncing.lock();
        self.committed.store(seq, Ordering::SeqCst);
        drop(guard);
        self.changed.notify_all();
    }

    /// Called as a write transaction starts waiting for the write turn.
    pub(super) fn writer_entered(&self) {
        self.writers.fetch_add(1, Ordering::SeqCst);
    }

    /// Called once that transaction has committed or rolled back.
    pub(super) fn writer_left(&self) {
        if self.writers.fetch_sub(1, Ordering::SeqCst) == 1 && self.lingering.load(Ordering::SeqCst) {
            self.wake(&self.linger);
        }
    }

    /// The number a read must wait for: the newest commit it may have seen.
    pub(super) fn visible(&self) -> u64 {
        self.begun.load(Ordering::SeqCst)
    }

    /// Returns once commit `seq` is on disk, syncing the log if nobody else is.
    pub(super) fn wait_durable(&self, seq: u64) -> Result<()> {
        loop {
            self.check()?;
            if self.durable.load(Ordering::SeqCst) >= seq {
                return Ok(());
            }
            let mut syncing = self.syncing.lock();
            // Wait while an fsync is under way, or while the commit asked for has not finished.
            while (*syncing || self.committed.load(Ordering::SeqCst) < seq)
                && self.durable.load(Ordering::SeqCst) < seq
                && !self.failed.load(Ordering::SeqCst)
            {
                self.changed.wait(&mut syncing);
            }
            if self.durable.load(Ordering::SeqCst) >= seq {
                return Ok(());
            }
            self.check()?;
            *syncing = true;
            drop(syncing);
            // Every commit numbered up to `covered` has its frames in the log now.
            let covered = self.committed.load(Ordering::SeqCst);
            let outcome = self.wal.lock().unwrap_or_else(|p| p.into_inner()).sync();
            self.syncs.fetch_add(1, Ordering::Relaxed);
            let mut syncing = self.syncing.lock();
            *syncing = false;
            match &outcome {
                Ok(()) => {
                    self.durable.fetch_max(covered, Ordering::SeqCst);
                }
                Err(e) => {
                    tracing::error!(error = %e, "fsync of the SQLite log failed; every write fails until restart");
                    self.failed.store(true, Ordering::SeqCst);
                }
            }
            drop(syncing);
            self.changed.notify_all();
            self.publish();
            outcome.map_err(|e| Error::internal(format!("the SQLite log could not be synced: {e}")))?;
        }
    }

    /// Wakes the threads waiting on `condvar`, after taking and dropping the lock they check
    /// their condition under: one between its check and its wait cannot miss the wake-up.
    fn wake(&self, condvar: &parking_lot::Condvar) {
        drop(self.syncing.lock());
        condvar.notify_all();
    }

    /// Tells asynchronous waiters how far the log is durable.
    fn publish(&self) {
        // Read under the watch's lock: both values only grow, so publishers racing each other
        // can never send an older state after a newer one.
        self.published.send_if_modified(|p| {
            let now =
                Published { durable: self.durable.load(Ordering::SeqCst), failed: self.failed.load(Ordering::SeqCst) };
            let modified = p.durable != now.durable || p.failed != now.failed;
            *p = now;
            modified
        });
    }

    /// Waits, without blocking the thread, until commit `seq` is on disk: the syncer thread
    /// makes it so if no blocking waiter does first.
    pub(super) async fn wait_durable_async(&self, seq: u64) -> Result<()> {
        let mut watch = self.published.subscribe();
        if self.durable.load(Ordering::SeqCst) < seq {
            if self.requested.fetch_max(seq, Ordering::SeqCst) < seq {
                self.wake(&self.wake_syncer);
            }
            // The sender lives as long as `self`, so the watch cannot close under us.
            let _ = watch.wait_for(|p| p.durable >= seq || p.failed).await;
        }
        self.check()?;
        if self.durable.load(Ordering::SeqCst) < seq {
            return Err(Error::internal("the SQLite log syncer stopped"));
        }
        Ok(())
    }

    /// The syncer thread: sleeps until an asynchronous caller asks for a commit not yet on
    /// disk, then makes it durable the way a blocking waiter does (sharing its fsync, or
    /// starting one), until the store is dropped.
    ///
    /// Before it syncs, it waits while other write transactions of this process are under
    /// way, for at most `LINGER`, so that one fsync covers their commits too (PostgreSQL's
    /// `commit_delay` with `commit_siblings`, in effect). An fsync costs tens of microseconds
    /// of CPU here, and without the wait a burst of writers got little more than one commit
    /// per fsync (BENCHMARKS.md); a store with no other writer syncs at once.
    fn run_syncer(&self) {
        loop {
            let mut guard = self.syncing.lock();
            let target = loop {
                if self.stopping.load(Ordering::SeqCst) {
                    return;
                }
                let requested = self.requested.load(Ordering::SeqCst);
                if requested > self.durable.load(Ordering::SeqCst) && !self.failed.load(Ordering::SeqCst) {
                    break requested;
                }
                self.wake_syncer.wait(&mut guard);
            };
            let deadline = Instant::now() + LINGER;
            self.lingering.store(true, Ordering::SeqCst);
            while self.writers.load(Ordering::SeqCst) > 0 && !self.stopping.load(Ordering::SeqCst) {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                self.linger.wait_until(&mut guard, deadline);
            }
            self.lingering.store(false, Ordering::SeqCst);
            drop(guard);
            // A failure is logged and published by `wait_durable`; the waiters see it there.
            let _ = self.wait_durable(target);
            self.publish();
        }
    }

    /// Makes everything committed so far durable (after migrations, which commit on their own).
    pub(super) fn sync_now(&self) -> Result<()> {
        let seq = self.begin_commit()?;
        self.end_commit(seq);
        self.wait_durable(seq)
    }

    fn check(&self) -> Result<()> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(Error::internal("an fsync of the SQLite log failed earlier; restart the CA"));
        }
        Ok(())
    }

    /// How many fsyncs of the log have run: with `commits()`, how well commits are grouped.
    pub(super) fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// The newest commit known to be on disk.
    #[cfg(test)]
    pub(super) fn durable(&self) -> u64 {
        self.durable.load(Ordering::SeqCst)
    }

    pub(super) fn commits(&self) -> u64 {
        self.committed.load(Ordering::SeqCst)
    }

    /// How many checkpoints the checkpointer has finished.
    pub(super) fn checkpoints(&self) -> u64 {
        self.checkpoints.load(Ordering::Relaxed)
    }
}

/// Checkpoints the log of one database file on a thread of its own, with a connection of its
/// own, whose pool connections have SQLite's automatic checkpoints turned off: after every
/// `CHECKPOINT_EVERY` commits of this process, or `CHECKPOINT_IDLE` after the last one.
///
/// Each checkpoint has two passes. A PASSIVE one copies most of the log while readers and
/// writers go on. It cannot finish under a steady load: new commits keep arriving, so the log
/// would never start over and would grow without end (it reached 440 MB in a 2000-issuance
/// run). The second pass holds this process's writers back (the in-process write turn) and
/// runs a RESTART checkpoint. That copies only what came during the first pass, and waits, for
/// at most `RESTART_WAIT`, for readers of older snapshots to finish. The next writer then
/// starts the log over from its beginning. Dropping the checkpointer stops the thread.
///
/// Between the two passes the checkpointer syncs the database file itself. SQLite syncs it only
/// in a pass that reaches the log's end, which under load is the RESTART pass alone: its fsync
/// then flushed every page the PASSIVE pass had copied, all over a growing file, while the
/// writers waited (11 to 16 ms once the file held 20 000 issuances, and the worst endpoint's
/// p99 grew from 15 to 31 ms over 100 000; BENCHMARKS.md). Synced before, the RESTART pass's
/// fsync has only the pages it copies itself to write.
pub(super) struct Checkpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub(super) fn start(
        db_path: &str,
        group: Arc<Shared>,
        writer: Arc<parking_lot::Mutex<()>>,
    ) -> Result<Checkpointer> {
        let mut conn = SqliteConnection::establish(db_path)
            .map_err(|e| Error::internal(format!("cannot open the SQLite checkpoint connection: {e}")))?;
        // NORMAL: the checkpoint syncs the log before it copies and the database after.
        conn.batch_execute(&format!(
            "PRAGMA busy_timeout = {}; PRAGMA synchronous = NORMAL;",
            RESTART_WAIT.as_millis()
        ))?;
        let database = File::open(db_path)
            .map_err(|e| Error::internal(format!("cannot open the SQLite database {db_path} to sync it: {e}")))?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let for_thread = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || run_checkpointer(conn, &database, &group, &writer, &for_thread))
            .map_err(|e| Error::internal(format!("cannot start the SQLite checkpointer: {e}")))?;
        Ok(Checkpointer { stop, thread: Some(thread) })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        *self.stop.0.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.stop.1.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run_checkpointer(
    mut conn: SqliteConnection,
    database: &File,
    group: &Shared,
    writer: &parking_lot::Mutex<()>,
    stop: &(Mutex<bool>, Condvar),
) {
    let mut done_through = group.commits();
    let mut last = Instant::now();
    // After a checkpoint that could not finish, the next waits at least this long, so that a
    // long reader does not make every poll hold the writers back for `RESTART_WAIT`.
    let mut not_before = Instant::now();
    loop {
        let stopped = stop.0.lock().unwrap_or_else(|p| p.into_inner());
        let (stopped, _) =
            stop.1.wait_timeout_while(stopped, CHECKPOINT_POLL, |s| !*s).unwrap_or_else(|p| p.into_inner());
        if *stopped {
            return;
        }
        drop(stopped);
        let committed = group.commits();
        let pending = committed.saturating_sub(done_through);
        if Instant::now() < not_before
            || (pending < CHECKPOINT_EVERY && (pending == 0 || last.elapsed() < CHECKPOINT_IDLE))
        {
            continue;
        }
        let outcome = checkpoint(&mut conn, "PASSIVE").and_then(|_| {
            // A failure here is SQLite's to meet in the RESTART pass, which syncs again.
            if let Err(e) = database.sync_data() {
                tracing::warn!(error = %e, "syncing the SQLite database before a checkpoint's last pass failed");
            }
            let _turn = writer.lock();
            checkpoint(&mut conn, "RESTART")
        });
        last = Instant::now();
        match outcome {
            Ok(true) => {
                group.checkpoints.fetch_add(1, Ordering::Relaxed);
                done_through = committed;
            }
            // Readers of older snapshots outlasted `RESTART_WAIT`: what was copied stays
            // copied, and the log starts over after a later checkpoint.
            Ok(false) => {
                tracing::warn!("a checkpoint of the SQLite log could not finish: readers held older snapshots");
                not_before = last + CHECKPOINT_IDLE;
            }
            // The next round tries again; the log grows meanwhile, and nothing is lost.
            Err(e) => {
                tracing::warn!(error = %e, "a checkpoint of the SQLite log failed");
                not_before = last + CHECKPOINT_IDLE;
            }
        }
    }
}

/// Runs one checkpoint in `mode`; whether it finished. SQLite answers a checkpoint that gave
/// up waiting for readers or writers with a row whose `busy` is 1, not with an error.
fn checkpoint(conn: &mut SqliteConnection, mode: &str) -> diesel::QueryResult<bool> {
    #[derive(diesel::QueryableByName)]
    struct Outcome {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        busy: i32,
    }
    use diesel::RunQueryDsl;
    let outcome: Outcome = diesel::sql_query(format!("PRAGMA wal_checkpoint({mode})")).get_result(conn)?;
    Ok(outcome.busy == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log deleted and made again (every connection closed, then one opened) is followed to
    /// its new file; while it is missing there is nothing to sync.
    #[test]
    fn the_log_is_followed_across_deletion() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("dualca.sqlite");
        let wal = dir.path().join("dualca.sqlite-wal");
        std::fs::write(&wal, b"frames").unwrap();
        let group = GroupCommit::open(db.to_str().unwrap()).unwrap();
        group.sync_now().unwrap();
        std::fs::remove_file(&wal).unwrap();
        group.sync_now().unwrap();
        std::fs::write(&wal, b"new frames").unwrap();
        group.sync_now().unwrap();
        let followed = group.wal.lock().unwrap().inode;
        assert_eq!(followed, std::fs::metadata(&wal).unwrap().ino());
        assert_eq!(group.syncs(), 3);
    }
}
