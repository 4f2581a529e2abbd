//! One idle database connection per process, kept between hook calls.
//!
//! sshd runs `account`, `session open` and `session close` of a login in
//! one process, and a JupyterHub authenticates every user in one: opening
//! SQLite each time (schema load, WAL index recovery) was most of the
//! module's own cost. A kept connection is used again only by the process
//! that opened it, for the same path, while the file passes the trust rules
//! again, is still the same file (device and inode: a restored backup is a
//! new file) and has the schema this build knows. Otherwise it is closed
//! and the file opened afresh. Idle, it holds no lock and no transaction,
//! so it blocks neither writers nor checkpoints.

use std::sync::Mutex;

use libdiycloud::store::{Database, Store, StoreError};

struct Idle {
    db: Database,
    pid: u32,
    store: Store,
}

static IDLE: Mutex<Option<Idle>> = Mutex::new(None);

/// The kept connection to `db`, if it may be used again; else a new one.
pub fn open(db: &Database) -> Result<Store, StoreError> {
    let idle = IDLE.lock().ok().and_then(|mut slot| slot.take());
    if let Some(idle) = idle {
        if idle.pid != std::process::id() {
            // Inherited across fork(): SQLite forbids using it, and closing
            // it would release the parent's locks. Left as it is.
            std::mem::forget(idle.store);
        } else if reusable(&idle, db) {
            return Ok(idle.store);
        }
    }
    Store::open_database(db)
}

/// Whether the kept connection may serve `db` now.
fn reusable(idle: &Idle, db: &Database) -> bool {
    idle.db == *db && idle.store.is_reusable()
}

/// Keeps `store` for the next call in this process (one at most).
pub fn keep(store: Store) {
    let Ok(mut slot) = IDLE.lock() else {
        return;
    };
    if slot.is_none() {
        *slot = Some(Idle {
            db: store.database().clone(),
            pid: std::process::id(),
            store,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use std::path::Path;

    use super::*;

    fn idle(path: &Path) -> Idle {
        Idle {
            db: Database::Sqlite(path.to_path_buf()),
            pid: std::process::id(),
            store: Store::open(path).unwrap(),
        }
    }

    fn sqlite(path: &Path) -> Database {
        Database::Sqlite(path.to_path_buf())
    }

    #[test]
    fn a_kept_connection_serves_only_the_same_trusted_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("d.db");
        Store::init(&db).unwrap();
        let kept = idle(&db);
        assert!(reusable(&kept, &sqlite(&db)));
        assert!(
            !reusable(&kept, &sqlite(&dir.path().join("other.db"))),
            "another path"
        );

        // Made writable by others: refused, as Store::open refuses it.
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(!reusable(&kept, &sqlite(&db)), "untrusted now");
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(reusable(&kept, &sqlite(&db)));

        // A restored backup: a new file at the same path.
        let restored = dir.path().join("restored.db");
        Store::init(&restored).unwrap();
        std::fs::rename(&restored, &db).unwrap();
        assert!(!reusable(&kept, &sqlite(&db)), "replaced");
        let kept = idle(&db);
        assert!(reusable(&kept, &sqlite(&db)));

        // Migrated by another version of slicectl.
        let status = std::process::Command::new("sqlite3")
            .arg(&db)
            .arg("PRAGMA user_version = 999;")
            .status()
            .unwrap();
        assert!(status.success());
        assert!(!reusable(&kept, &sqlite(&db)), "schema changed");

        // Gone.
        std::fs::remove_file(&db).unwrap();
        assert!(!reusable(&kept, &sqlite(&db)));
    }
}
