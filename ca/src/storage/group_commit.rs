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
//! A failed fsync poisons the whole store: after one, the kernel may have dropped the dirty
//! pages it could not write, and a later fsync that succeeds would not bring them back. Every
//! write and read after it fails until the process restarts and SQLite recovers from the log.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

use crate::{Error, Result};

pub(super) struct GroupCommit {
    wal: Mutex<WalFile>,
    /// Commits numbered in writer order: the newest one begun (bumped just before COMMIT, so
    /// a reader that can see a commit also sees its number)...
    begun: AtomicU64,
    /// ...the newest one whose COMMIT has returned (its frames are in the log)...
    committed: AtomicU64,
    /// ...and the newest one an fsync has covered.
    durable: AtomicU64,
    /// True while an fsync is under way; `changed` announces its end and each COMMIT's.
    syncing: Mutex<bool>,
    changed: Condvar,
    failed: AtomicBool,
    syncs: AtomicU64,
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
        Ok(GroupCommit {
            wal: Mutex::new(wal),
            begun: AtomicU64::new(0),
            committed: AtomicU64::new(0),
            durable: AtomicU64::new(0),
            syncing: Mutex::new(false),
            changed: Condvar::new(),
            failed: AtomicBool::new(false),
            syncs: AtomicU64::new(0),
        })
    }

    /// Called by the writer, holding the write turn, just before COMMIT: its commit's number.
    pub(super) fn begin_commit(&self) -> Result<u64> {
        self.check()?;
        Ok(self.begun.fetch_add(1, Ordering::SeqCst) + 1)
    }

    /// Called by the writer, still holding the write turn, once COMMIT has returned, whether it
    /// succeeded or not (a failed one has nothing to sync, and nobody may wait for it forever).
    pub(super) fn end_commit(&self, seq: u64) {
        let guard = self.syncing.lock().unwrap_or_else(|p| p.into_inner());
        self.committed.store(seq, Ordering::SeqCst);
        drop(guard);
        self.changed.notify_all();
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
            let mut syncing = self.syncing.lock().unwrap_or_else(|p| p.into_inner());
            // Wait while an fsync is under way, or while the commit asked for has not finished.
            while (*syncing || self.committed.load(Ordering::SeqCst) < seq)
                && self.durable.load(Ordering::SeqCst) < seq
                && !self.failed.load(Ordering::SeqCst)
            {
                syncing = self.changed.wait(syncing).unwrap_or_else(|p| p.into_inner());
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
            let mut syncing = self.syncing.lock().unwrap_or_else(|p| p.into_inner());
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
            outcome.map_err(|e| Error::internal(format!("the SQLite log could not be synced: {e}")))?;
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
