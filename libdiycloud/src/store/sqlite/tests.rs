use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::model::time::Timestamp;
use crate::model::{Allocation, Username};
use crate::store::NewUser;

fn new_user(name: &str) -> NewUser {
    NewUser::new(
        Username::parse(name).unwrap(),
        "$argon2id$fake".into(),
        Allocation::default(),
    )
}

fn fresh() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = SqliteStore::init(&dir.path().join("sub/diycloud.db")).unwrap();
    (dir, store)
}

#[test]
fn init_creates_private_files_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/diycloud.db");
    let (_, report) = SqliteStore::init(&path).unwrap();
    assert_eq!(
        report,
        InitReport {
            created: true,
            from_version: 0,
            to_version: SCHEMA_VERSION
        }
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    let (_, again) = SqliteStore::init(&path).unwrap();
    assert_eq!(
        again,
        InitReport {
            created: false,
            from_version: SCHEMA_VERSION,
            to_version: SCHEMA_VERSION
        }
    );
    SqliteStore::open(&path).unwrap();
}

#[test]
fn open_refuses_missing_empty_corrupt_and_newer_databases() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    assert!(matches!(
        SqliteStore::open(&missing),
        Err(StoreError::Missing(_))
    ));
    assert!(!missing.exists(), "open must never create the file");

    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(
        SqliteStore::open(&empty),
        Err(StoreError::NotInitialised(_))
    ));

    let corrupt = dir.path().join("corrupt.db");
    std::fs::write(&corrupt, vec![0x5a; 8192]).unwrap();
    let err = SqliteStore::open(&corrupt).err().unwrap();
    assert!(err.to_string().contains("not a database"), "{err}");

    let newer = dir.path().join("newer.db");
    SqliteStore::init(&newer).unwrap();
    Connection::open(&newer)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    assert!(matches!(
        SqliteStore::open(&newer),
        Err(StoreError::TooNew { found: 99, .. })
    ));
    assert!(matches!(
        SqliteStore::init(&newer),
        Err(StoreError::TooNew { found: 99, .. })
    ));

    assert!(
        SqliteStore::open(dir.path()).is_err(),
        "a directory is not a database"
    );
}

#[test]
fn hand_edited_nonsense_is_reported_not_guessed() {
    let (_dir, mut store) = fresh();
    store
        .write(|tx| tx.insert_user(&new_user("alice"), Timestamp(1)))
        .unwrap();
    let set = |store: &SqliteStore, key: &str, value: &str| {
        store
            .conn
            .execute(
                "UPDATE resource_allocations SET limits = json_set(limits, '$.' || ?1, ?2)",
                [key, value],
            )
            .unwrap();
    };
    for (key, value, good) in [
        ("memory", "lots", "2G"),
        ("cpu_weight", "0", "100"),
        ("io_weight", "20000", "100"),
        ("memory_high", "-1", "infinity"),
        ("cpu", "0", "1"),
    ] {
        set(&store, key, value);
        let err = store.user("alice").unwrap_err().to_string();
        assert!(err.contains(key), "{key}: {err}");
        set(&store, key, good);
        store.user("alice").unwrap().unwrap();
    }
    // Text that is no JSON object, or a limit that is no text.
    for limits in ["lots", r#"{"memory": 2}"#] {
        store
            .conn
            .execute("UPDATE resource_allocations SET limits = ?1", [limits])
            .unwrap();
        let err = store.user("alice").unwrap_err().to_string();
        assert!(err.contains("limits"), "{limits}: {err}");
    }
}

#[test]
fn init_migrates_an_older_database_and_keeps_its_users() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO users (username, password_hash, created_at, updated_at) VALUES ('alice', 'h', 1, 1)",
            [],
        )
        .unwrap();
        conn.execute("INSERT INTO resource_allocations (user_id) VALUES (1)", [])
            .unwrap();
    }
    assert!(matches!(
        SqliteStore::open(&path),
        Err(StoreError::Outdated { found: 1, .. })
    ));
    let (store, report) = SqliteStore::init(&path).unwrap();
    assert_eq!(
        (report.from_version, report.to_version),
        (1, SCHEMA_VERSION)
    );
    let alice = store.user("alice").unwrap().unwrap();
    assert_eq!(alice.last_logout, None);
    // A user from before fair share gets everyone's default share.
    assert_eq!(alice.allocation.cpu_weight, crate::model::Weight::DEFAULT);
    assert_eq!(alice.allocation.io_weight, crate::model::Weight::DEFAULT);
    assert_eq!(alice.allocation.memory_high, crate::model::Size::Infinity);
    let mut store = store;
    store
        .write(|tx| tx.record_logout("alice", Timestamp(7)))
        .unwrap();
    assert_eq!(
        store.user("alice").unwrap().unwrap().last_logout,
        Some(Timestamp(7))
    );
}

#[test]
fn the_wal_stays_small_across_many_short_connections() {
    let (dir, mut store) = fresh();
    store
        .write(|tx| tx.insert_user(&new_user("alice"), Timestamp(1)))
        .unwrap();
    drop(store);
    let path = dir.path().join("sub/diycloud.db");
    let wal = dir.path().join("sub/diycloud.db-wal");
    let mut largest = 0;
    // Like logins: open, write, close, many times.
    for i in 0..300 {
        let mut store = SqliteStore::open(&path).unwrap();
        store
            .write(|tx| tx.record_login("alice", Timestamp(i)))
            .unwrap();
        drop(store);
        largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
    }
    assert!(
        largest <= WAL_TRIM_BYTES + 2 * 4096 + 64,
        "the WAL grew to {largest} bytes"
    );
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.user("alice").unwrap().unwrap().last_login,
        Some(Timestamp(299))
    );
}
