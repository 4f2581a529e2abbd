use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::model::limits::LimitChanges;
use crate::model::lockout::{FailureState, LockoutPolicy};
use crate::model::time::Timestamp;
use crate::model::user::Role;
use crate::model::{Allocation, Cpu, Size, Username};

fn new_user(name: &str) -> NewUser {
    NewUser {
        email: Some(format!("{name}@example.org")),
        ..NewUser::new(
            Username::parse(name).unwrap(),
            "$argon2id$fake".into(),
            Allocation::default(),
        )
    }
}

fn fresh() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::init(&dir.path().join("sub/diycloud.db")).unwrap();
    (dir, store)
}

#[test]
fn init_creates_private_files_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/diycloud.db");
    let (_, report) = Store::init(&path).unwrap();
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
    let (_, again) = Store::init(&path).unwrap();
    assert_eq!(
        again,
        InitReport {
            created: false,
            from_version: SCHEMA_VERSION,
            to_version: SCHEMA_VERSION
        }
    );
    Store::open(&path).unwrap();
}

#[test]
fn open_refuses_missing_empty_corrupt_and_newer_databases() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    assert!(matches!(Store::open(&missing), Err(StoreError::Missing(_))));
    assert!(!missing.exists(), "open must never create the file");

    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(
        Store::open(&empty),
        Err(StoreError::NotInitialised(_))
    ));

    let corrupt = dir.path().join("corrupt.db");
    std::fs::write(&corrupt, vec![0x5a; 8192]).unwrap();
    let err = Store::open(&corrupt).err().unwrap();
    assert!(err.to_string().contains("not a database"), "{err}");

    let newer = dir.path().join("newer.db");
    Store::init(&newer).unwrap();
    Connection::open(&newer)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    assert!(matches!(
        Store::open(&newer),
        Err(StoreError::TooNew { found: 99, .. })
    ));
    assert!(matches!(
        Store::init(&newer),
        Err(StoreError::TooNew { found: 99, .. })
    ));

    assert!(
        Store::open(dir.path()).is_err(),
        "a directory is not a database"
    );
}

#[test]
fn users_round_trip() {
    let (_dir, mut store) = fresh();
    let created = store
        .write(|tx| tx.insert_user(&new_user("alice"), Timestamp(100)))
        .unwrap();
    assert_eq!(created.username.as_str(), "alice");
    assert_eq!(created.allocation, Allocation::default());
    assert_eq!(created.created_at, Timestamp(100));
    assert!(created.active);
    let (user, hash) = store.credentials("alice").unwrap().unwrap();
    assert_eq!(user, created);
    assert_eq!(hash, "$argon2id$fake");
    assert!(store.user("bob").unwrap().is_none());

    let dup = store.write(|tx| tx.insert_user(&new_user("alice"), Timestamp(101)));
    assert!(matches!(dup, Err(StoreError::UserExists(_))));
}

#[test]
fn update_touches_only_named_fields() {
    let (_dir, mut store) = fresh();
    store
        .write(|tx| tx.insert_user(&new_user("alice"), Timestamp(100)))
        .unwrap();
    let failures = FailureState {
        count: 3,
        window_start: Some(Timestamp(5)),
        locked_at: None,
    };
    store
        .write(|tx| tx.set_failures("alice", &failures))
        .unwrap();
    let changes = UserChanges {
        limits: LimitChanges {
            cpu: Some(Cpu::Infinity),
            memory: Some(Size::Bytes(1 << 30)),
            ..LimitChanges::default()
        },
        email: Some(None),
        role: Some(Role::Admin),
        ..Default::default()
    };
    let detail = store
        .write(|tx| tx.update_user("alice", &changes, Timestamp(200)))
        .unwrap();
    assert_eq!(
        detail,
        serde_json::json!({"cpu": "infinity", "memory": "1G", "email": null, "role": "admin"})
    );
    let user = store.user("alice").unwrap().unwrap();
    assert_eq!(user.allocation.cpu, Cpu::Infinity);
    assert_eq!(user.allocation.memory, Size::Bytes(1 << 30));
    assert_eq!(user.allocation.disk, Allocation::default().disk);
    assert_eq!(user.email, None);
    assert_eq!(user.role, Role::Admin);
    assert_eq!(user.failures, failures, "failure count untouched");
    assert_eq!(user.updated_at, Timestamp(200));

    let missing = store.write(|tx| tx.update_user("bob", &changes, Timestamp(1)));
    assert!(matches!(missing, Err(StoreError::UserNotFound(_))));
}

#[test]
fn a_failed_write_leaves_nothing_behind() {
    let (_dir, mut store) = fresh();
    let result: Result<(), StoreError> = store.write(|tx| {
        tx.insert_user(&new_user("alice"), Timestamp(1))?;
        tx.audit(
            Timestamp(1),
            "test",
            "user.add",
            "alice",
            &serde_json::json!({}),
        )?;
        Err(StoreError::UserNotFound(
            "simulated failure after the insert".into(),
        ))
    });
    assert!(result.is_err());
    assert!(store.user("alice").unwrap().is_none());
    assert!(store.audit_log("alice", 10).unwrap().is_empty());
}

#[test]
fn delete_cascades_and_audit_survives() {
    let (_dir, mut store) = fresh();
    store
        .write(|tx| {
            tx.insert_user(&new_user("alice"), Timestamp(1))?;
            tx.audit(
                Timestamp(1),
                "root",
                "user.add",
                "alice",
                &serde_json::json!({"role": "user"}),
            )
        })
        .unwrap();
    store
        .write(|tx| {
            tx.delete_user("alice")?;
            tx.audit(
                Timestamp(2),
                "root",
                "user.del",
                "alice",
                &serde_json::json!({}),
            )
        })
        .unwrap();
    assert!(store.user("alice").unwrap().is_none());
    let allocations: i64 = store
        .conn
        .query_row("SELECT COUNT(*) FROM resource_allocations", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(allocations, 0);
    let log = store.audit_log("alice", 10).unwrap();
    assert_eq!(
        log.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["user.add", "user.del"]
    );
    assert_eq!(log[0].detail, serde_json::json!({"role": "user"}));
}

#[test]
fn hand_edited_nonsense_is_reported_not_guessed() {
    let (_dir, mut store) = fresh();
    store
        .write(|tx| tx.insert_user(&new_user("alice"), Timestamp(1)))
        .unwrap();
    store
        .conn
        .execute("UPDATE resource_allocations SET mem_limit = 'lots'", [])
        .unwrap();
    let err = store.user("alice").unwrap_err().to_string();
    assert!(err.contains("mem_limit"), "{err}");
}

#[test]
fn parallel_writers_lose_no_failure_count() {
    let (dir, mut store) = fresh();
    store
        .write(|tx| tx.insert_user(&new_user("alice"), Timestamp(1)))
        .unwrap();
    let path = dir.path().join("sub/diycloud.db");
    let policy = LockoutPolicy {
        deny: 0,
        ..Default::default()
    };
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut store = Store::open(&path).unwrap();
                for _ in 0..25 {
                    store
                        .write(|tx| {
                            let (user, _) = tx.credentials("alice")?.unwrap();
                            tx.set_failures(
                                "alice",
                                &policy.after_failure(&user.failures, Timestamp(10)),
                            )
                        })
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(store.user("alice").unwrap().unwrap().failures.count, 200);
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
        Store::open(&path),
        Err(StoreError::Outdated { found: 1, .. })
    ));
    let (store, report) = Store::init(&path).unwrap();
    assert_eq!(
        (report.from_version, report.to_version),
        (1, SCHEMA_VERSION)
    );
    let alice = store.user("alice").unwrap().unwrap();
    assert_eq!(alice.last_logout, None);
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
        let mut store = Store::open(&path).unwrap();
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
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.user("alice").unwrap().unwrap().last_login,
        Some(Timestamp(299))
    );
}
