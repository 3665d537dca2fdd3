//! All database access. Nothing outside this module builds a query; the services in this crate
//! call the functions here inside `Storage::write` or `Storage::read`.

/// Runs one diesel query on the connection's own backend instead of through the
/// `MultiConnection` enum: diesel's derived wrapper renders the query's whole SQL text on every
/// execution, even when its prepared statement is cached by type, which cost about a twentieth
/// of the CPU per issuance (BENCHMARKS.md, run of 2026-12-06). The body is written once and
/// compiled for each backend, so the same query text serves both. Used on the request path;
/// elsewhere the enum's convenience wins.
macro_rules! on_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::storage::DbConnection::Sqlite($c) => $body,
            $crate::storage::DbConnection::Postgresql($c) => $body,
        }
    };
}

/// The rows of a one-to-many `LEFT JOIN` (the parent's row once per child, with `None` for a
/// parent without children) as the parent and its children, in row order; `None` when the
/// query found no parent.
fn parent_with_children<P, C>(rows: impl IntoIterator<Item = (P, Option<C>)>) -> Option<(P, Vec<C>)> {
    let mut rows = rows.into_iter();
    let (parent, first) = rows.next()?;
    let children = first.into_iter().chain(rows.filter_map(|(_, child)| child)).collect();
    Some((parent, children))
}

/// A write's result, with a unique index's refusal told apart as `Ok(None)`: the row would
/// duplicate a key that another row holds. The services check for such a row first, but on
/// PostgreSQL another transaction can write one between the check and the write; the write
/// then waits for that transaction's commit and fails. PostgreSQL aborts the enclosing
/// transaction with it, so the caller can only give its answer (a conflict), not go on.
fn unless_duplicate<T>(result: diesel::QueryResult<T>) -> crate::Result<Option<T>> {
    use diesel::result::{DatabaseErrorKind, Error as DieselError};
    match result {
        Ok(done) => Ok(Some(done)),
        Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub(crate) mod accounts;
pub(crate) mod assets;
pub(crate) mod audit;
pub(crate) mod certificates;
mod connection;
pub(crate) mod crl;
pub(crate) mod email_challenges;
mod fixed;
mod group_commit;
pub(crate) mod nonces;
pub(crate) mod orders;
pub(crate) mod outbox;
pub(crate) mod people;
pub(crate) mod recoveries;
pub(crate) mod rows;
pub(crate) mod scheduled;
mod schema;
pub(crate) mod tokens;

pub use certificates::CertificateCounts;
pub use connection::{Backend, CommitCounts, DbConnection, Durability, Storage};
pub(crate) use fixed::{advisory_lock, lock_row, Bind, Fixed};

/// Storages for tests that must hold on both backends.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::PathBuf;

    use diesel::{Connection, RunQueryDsl};

    use super::Storage;

    /// A test's storage; an SQLite file is removed with it, with its log and shared memory,
    /// once the storage is closed.
    pub(crate) struct TestStorage {
        storage: Option<Storage>,
        file: Option<PathBuf>,
        /// The PostgreSQL database's URL, for a second connection of the test's own.
        pub(crate) postgres_url: Option<String>,
    }

    impl std::ops::Deref for TestStorage {
        type Target = Storage;

        fn deref(&self) -> &Storage {
            self.storage.as_ref().expect("the storage is open until the test storage is dropped")
        }
    }

    impl Drop for TestStorage {
        fn drop(&mut self) {
            drop(self.storage.take());
            if let Some(file) = &self.file {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
                }
            }
        }
    }

    /// A valid account row of `track` with key `thumbprint`, bound to nothing.
    pub(crate) fn account_row(id: &str, track: crate::Track, thumbprint: &str) -> super::rows::AccountRow {
        super::rows::AccountRow {
            id: id.into(),
            track: track.as_str().into(),
            key_thumbprint: thumbprint.into(),
            jwk: "{}".into(),
            status: "valid".into(),
            contact: "[]".into(),
            tos_agreed: true,
            eab_kid: None,
            created_at: 1,
            updated_at: 1,
            asset_id: None,
            person_id: None,
        }
    }

    /// A person row at `email` in `status`, proofed by email.
    pub(crate) fn person_row(id: &str, email: &str, status: crate::model::PersonStatus) -> super::people::PersonRow {
        super::people::PersonRow {
            id: id.into(),
            email: email.into(),
            display_name: "P".into(),
            employee_id: format!("E-{id}"),
            manager_email: "boss@example.test".into(),
            status: status.as_str().into(),
            proofing_level: "email".into(),
            created_at: 1,
            updated_at: 1,
            left_at: None,
        }
    }

    /// A fresh SQLite database, and a fresh PostgreSQL one when DUALCA_TEST_POSTGRES_URL is
    /// set (`.ci/run` drops the `dualca_test_*` databases earlier runs left).
    pub(crate) fn storages() -> Vec<TestStorage> {
        let name = format!("dualca_test_{}", crate::ids::hex(&crate::ids::random_bytes::<8>()));
        let path = std::env::temp_dir().join(format!("{name}.db"));
        let sqlite = Storage::open(path.to_str().unwrap(), 2).unwrap();
        let mut out = vec![TestStorage { storage: Some(sqlite), file: Some(path), postgres_url: None }];
        if let Ok(base) = std::env::var("DUALCA_TEST_POSTGRES_URL") {
            let mut conn = diesel::pg::PgConnection::establish(&base).unwrap();
            diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut conn).unwrap();
            let (prefix, _) = base.rsplit_once('/').unwrap();
            let url = format!("{prefix}/{name}");
            let storage = Storage::open(&url, 2).unwrap();
            out.push(TestStorage { storage: Some(storage), file: None, postgres_url: Some(url) });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::parent_with_children;

    #[test]
    fn a_left_join_splits_into_the_parent_and_its_children() {
        assert_eq!(parent_with_children(Vec::<(u8, Option<u8>)>::new()), None);
        assert_eq!(parent_with_children(vec![(1, None::<u8>)]), Some((1, vec![])));
        assert_eq!(parent_with_children(vec![(1, Some(7)), (1, Some(8)), (1, Some(9))]), Some((1, vec![7, 8, 9])));
    }
}
