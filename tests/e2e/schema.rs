//! Migration discipline, checked on the schema itself: the SQLite and PostgreSQL migrations stay
//! in step, each has up and down, and no foreign key deletes rows by cascade. Also the storage
//! layer's hold on PostgreSQL connections that the server ends.

use diesel::sql_types::Text;
use diesel::{Connection, QueryableByName, RunQueryDsl};

use crate::common::postgres_database;

fn migration_names(backend: &str) -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(backend);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_dir())
        .map(|e| {
            for file in ["up.sql", "down.sql"] {
                assert!(e.path().join(file).exists(), "{} lacks {file}", e.path().display());
            }
            e.file_name().to_string_lossy().into_owned()
        })
        .collect();
    names.sort();
    names
}

#[test]
fn sqlite_and_postgres_migrations_stay_in_step() {
    let sqlite = migration_names("sqlite");
    assert!(!sqlite.is_empty());
    assert_eq!(sqlite, migration_names("postgres"));
}

#[derive(QueryableByName)]
struct ForeignKey {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    on_delete: String,
}

#[test]
fn no_foreign_key_cascades_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema.db");
    dualca_ca::storage::Storage::open(path.to_str().unwrap(), 1).unwrap();
    let mut conn = diesel::sqlite::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
    let keys: Vec<ForeignKey> = diesel::sql_query(
        "SELECT m.name AS table_name, f.on_delete AS on_delete FROM sqlite_master m \
         JOIN pragma_foreign_key_list(m.name) f WHERE m.type = 'table'",
    )
    .load(&mut conn)
    .unwrap();
    assert!(keys.len() >= 5, "expected the foundation's foreign keys, found {}", keys.len());
    for key in keys {
        assert!(
            matches!(key.on_delete.as_str(), "NO ACTION" | "RESTRICT"),
            "{} deletes by {}",
            key.table_name,
            key.on_delete
        );
    }
}

#[test]
fn no_foreign_key_cascades_on_postgres() {
    let Some(url) = postgres_database() else { return };
    dualca_ca::storage::Storage::open(&url, 1).unwrap();
    let mut conn = diesel::pg::PgConnection::establish(&url).unwrap();
    let keys: Vec<ForeignKey> = diesel::sql_query(
        "SELECT tc.table_name::text AS table_name, rc.delete_rule::text AS on_delete \
         FROM information_schema.referential_constraints rc \
         JOIN information_schema.table_constraints tc ON tc.constraint_name = rc.constraint_name",
    )
    .load(&mut conn)
    .unwrap();
    assert!(keys.len() >= 5);
    for key in keys {
        assert!(
            matches!(key.on_delete.as_str(), "NO ACTION" | "RESTRICT"),
            "{} deletes by {}",
            key.table_name,
            key.on_delete
        );
    }
}

#[derive(QueryableByName)]
struct Persistence {
    #[diesel(sql_type = diesel::sql_types::Text)]
    relname: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    persistence: String,
}

/// On PostgreSQL only the nonces table is unlogged (no WAL, so no WAL flush for the two
/// commits per request that issue and redeem nonces); every table that holds state, audit
/// events included, stays logged, so a crash or a failover keeps it.
#[test]
fn only_the_nonces_are_unlogged_on_postgres() {
    let Some(url) = postgres_database() else { return };
    dualca_ca::storage::Storage::open(&url, 1).unwrap();
    let mut conn = diesel::pg::PgConnection::establish(&url).unwrap();
    let tables: Vec<Persistence> = diesel::sql_query(
        "SELECT c.relname::text AS relname, c.relpersistence::text AS persistence FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind = 'r'",
    )
    .load(&mut conn)
    .unwrap();
    assert!(tables.len() >= 10, "{} tables", tables.len());
    for table in tables {
        let expected = if table.relname == "nonces" { "u" } else { "p" };
        assert_eq!(table.persistence, expected, "persistence of {}", table.relname);
    }
}

#[derive(QueryableByName)]
struct BackendPid {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pid: i32,
}

/// A PostgreSQL connection the server has ended is replaced. The pool checks a connection at
/// checkout only when no call on it succeeded within the last half second, so a connection
/// idle for longer is replaced before any call fails, and one that dies while proven fails at
/// most one call, after which it is checked, and replaced, before the next.
#[test]
fn a_postgres_connection_the_server_ended_is_replaced() {
    let Some(url) = postgres_database() else { return };
    // One connection, so every call gets the same one until it is replaced.
    let storage = dualca_ca::storage::Storage::open(&url, 1).unwrap();
    let pid = || {
        storage.read(|conn| Ok(diesel::sql_query("SELECT pg_backend_pid() AS pid").get_result::<BackendPid>(conn)?.pid))
    };
    let mut admin = diesel::pg::PgConnection::establish(&url).unwrap();
    let mut end = |pid: i32| {
        diesel::sql_query(format!("SELECT pg_terminate_backend({pid}) AS pid")).execute(&mut admin).unwrap();
        // pg_terminate_backend only signals; wait (bounded) until the backend is gone.
        for _ in 0..100 {
            let left: Vec<BackendPid> =
                diesel::sql_query(format!("SELECT pid FROM pg_stat_activity WHERE pid = {pid}"))
                    .load(&mut admin)
                    .unwrap();
            if left.is_empty() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("backend {pid} did not end");
    };

    let first = pid().unwrap();
    end(first);
    std::thread::sleep(std::time::Duration::from_millis(600));
    let second = pid().expect("an idle connection is checked at checkout and replaced");
    assert_ne!(second, first);

    // Ended while proven: the next call may use it unchecked and fail (on a machine slow
    // enough to let the window pass, it is checked instead), but never more than one call.
    end(second);
    let third = match pid() {
        Ok(third) => third,
        Err(e) => {
            assert!(e.kind == dualca_ca::ErrorKind::Internal, "{e:?}");
            pid().expect("after a failed call the connection is checked, and replaced")
        }
    };
    assert_ne!(third, second);
}
