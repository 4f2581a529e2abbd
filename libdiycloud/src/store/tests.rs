//! The store's contract, run against every backend this run can reach:
//! SQLite always; PostgreSQL where `DIYCLOUD_TEST_PG_URL` names a server
//! (`tests/system/cluster.sh` starts one and sets `DIYCLOUD_TEST_PG_*`).
//! Each test gets an empty database: a temporary file, or a schema of its
//! own on the server, dropped afterwards.

// Timing a connect is what two of these tests are about.
#![allow(clippy::disallowed_methods)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::postgres::PgStore;
use super::sqlite::SqliteStore;
use super::*;
use crate::model::history::{Counter, Sample};
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

/// An empty database of one backend.
pub(crate) struct Fixture {
    pub name: &'static str,
    pub db: Database,
    _dir: tempfile::TempDir,
    /// The PostgreSQL schema, and the settings to reach it without it.
    schema: Option<(String, PostgresSettings)>,
}

static SCHEMAS: AtomicU32 = AtomicU32::new(0);

/// The PostgreSQL settings of the test server, if there is one.
pub(crate) fn test_server() -> Option<PostgresSettings> {
    let Ok(url) = std::env::var("DIYCLOUD_TEST_PG_URL") else {
        assert!(
            std::env::var_os("DIYCLOUD_TEST_PG_REQUIRED").is_none(),
            "DIYCLOUD_TEST_PG_REQUIRED is set but DIYCLOUD_TEST_PG_URL is not"
        );
        return None;
    };
    Some(PostgresSettings {
        url,
        password_file: std::env::var_os("DIYCLOUD_TEST_PG_PASSWORD_FILE").map(PathBuf::from),
        ca_file: std::env::var_os("DIYCLOUD_TEST_PG_CA").map_or_else(
            || PathBuf::from("/etc/ssl/certs/ca-certificates.crt"),
            PathBuf::from,
        ),
        cache: PathBuf::new(),
        connect_timeout: Duration::from_secs(5),
        lockout: LockoutPolicy::default(),
        cache_max_age: Duration::from_secs(3600),
    })
}

impl Fixture {
    pub fn sqlite() -> Self {
        let f = Self::sqlite_at(None);
        Store::init_database(&f.db).unwrap();
        f
    }

    /// An SQLite database at schema `version` (`None`: none yet), as an
    /// older release left it.
    pub fn sqlite_at(version: Option<usize>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/diycloud.db");
        let db = Database::Sqlite(path.clone());
        if let Some(version) = version {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let conn = rusqlite::Connection::open(&path).unwrap();
            for sql in &super::sqlite::MIGRATIONS[..version] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", version as i64)
                .unwrap();
        }
        Self {
            name: "sqlite",
            db,
            _dir: dir,
            schema: None,
        }
    }

    /// A schema of its own on the test server, and a cache file.
    pub fn postgres(server: &PostgresSettings) -> Self {
        Self::postgres_at(server, None)
    }

    /// [`Fixture::postgres`] at schema `version` (`None`: the current
    /// one), as an older release left it.
    pub fn postgres_at(server: &PostgresSettings, version: Option<usize>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let schema = format!(
            "t_{}_{}",
            std::process::id(),
            SCHEMAS.fetch_add(1, Ordering::Relaxed)
        );
        let base = PostgresSettings {
            cache: dir.path().join("cache.db"),
            ..server.clone()
        };
        PgStore::connect(&base)
            .unwrap()
            .execute_raw(&format!("CREATE SCHEMA {schema}"))
            .unwrap();
        let joiner = if base.url.contains('?') { '&' } else { '?' };
        let settings = PostgresSettings {
            url: format!("{}{joiner}options=-csearch_path%3D{schema}", base.url),
            ..base.clone()
        };
        let db = Database::Postgres(Box::new(settings));
        match version {
            None => {
                Store::init_database(&db).unwrap();
            }
            Some(version) => {
                let Database::Postgres(settings) = &db else {
                    unreachable!()
                };
                let older = PgStore::connect(settings).unwrap();
                for sql in &super::postgres::MIGRATIONS[..version] {
                    older.execute_raw(sql).unwrap();
                }
                older
                    .execute_raw(&format!(
                        "CREATE TABLE diycloud_schema (version BIGINT NOT NULL); \
                         INSERT INTO diycloud_schema (version) VALUES ({version})"
                    ))
                    .unwrap();
            }
        }
        Self {
            name: "postgresql",
            db,
            _dir: dir,
            schema: Some((schema, base)),
        }
    }

    pub fn open(&self) -> Store {
        Store::open_database(&self.db).unwrap()
    }

    /// The PostgreSQL settings of this fixture.
    pub fn settings(&self) -> &PostgresSettings {
        match &self.db {
            Database::Postgres(settings) => settings,
            Database::Sqlite(_) => panic!("not a PostgreSQL fixture"),
        }
    }

    /// Runs SQL that both dialects read alike, straight on the database.
    pub fn execute(&self, sql: &str) {
        match &self.db {
            Database::Sqlite(path) => {
                rusqlite::Connection::open(path)
                    .unwrap()
                    .execute_batch(sql)
                    .unwrap();
            }
            Database::Postgres(settings) => {
                PgStore::connect(settings)
                    .unwrap()
                    .execute_raw(sql)
                    .unwrap();
            }
        }
    }

    /// The number the query gives.
    pub fn number(&self, sql: &str) -> i64 {
        match &self.db {
            Database::Sqlite(path) => rusqlite::Connection::open(path)
                .unwrap()
                .query_row(sql, [], |r| r.get(0))
                .unwrap(),
            Database::Postgres(settings) => PgStore::connect(settings)
                .unwrap()
                .query_number(sql)
                .unwrap(),
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some((schema, base)) = &self.schema {
            if let Ok(server) = PgStore::connect(base) {
                let _ = server.execute_raw(&format!("DROP SCHEMA {schema} CASCADE"));
            }
        }
    }
}

/// Runs `test` on an empty database of every backend this run can reach.
pub(crate) fn each_backend(test: impl Fn(&Fixture)) {
    test(&Fixture::sqlite());
    match test_server() {
        Some(server) => test(&Fixture::postgres(&server)),
        None => eprintln!("PostgreSQL: skipped (DIYCLOUD_TEST_PG_URL is not set)"),
    }
}

#[test]
fn users_round_trip() {
    each_backend(|f| {
        let mut store = f.open();
        let created = store
            .write(|tx| tx.insert_user(&new_user("alice"), Timestamp(100)))
            .unwrap();
        assert_eq!(created.username.as_str(), "alice");
        assert_eq!(created.allocation, Allocation::default());
        assert_eq!(created.created_at, Timestamp(100));
        assert!(created.active);
        let (user, hash) = store.credentials("alice").unwrap().unwrap();
        assert_eq!(user, created, "{}", f.name);
        assert_eq!(hash, "$argon2id$fake");
        assert!(store.user("bob").unwrap().is_none());
        assert_eq!(store.users().unwrap(), vec![created]);

        let dup = store.write(|tx| tx.insert_user(&new_user("alice"), Timestamp(101)));
        assert!(matches!(dup, Err(StoreError::UserExists(_))), "{}", f.name);
    });
}

#[test]
fn update_touches_only_named_fields() {
    each_backend(|f| {
        let mut store = f.open();
        store
            .write(|tx| tx.insert_user(&new_user("alice"), Timestamp(100)))
            .unwrap();
        let failures = FailureState {
            count: 3,
            window_start: Some(Timestamp(5)),
            locked_at: None,
        };
        store
            .write(|tx| tx.set_failures("alice", &failures, Timestamp(5)))
            .unwrap();
        let changes = UserChanges {
            limits: LimitChanges {
                cpu: Some(Cpu::Infinity),
                memory: Some(Size::Bytes(1 << 30)),
                cpu_weight: Some("300".parse().unwrap()),
                memory_high: Some(Size::Bytes(512 << 20)),
                ..LimitChanges::default()
            },
            email: Some(None),
            role: Some(Role::Admin),
            active: Some(false),
            ..Default::default()
        };
        let detail = store
            .write(|tx| tx.update_user("alice", &changes, Timestamp(200)))
            .unwrap();
        assert_eq!(
            detail,
            serde_json::json!({"cpu": "infinity", "memory": "1G", "email": null, "role": "admin",
                "active": false, "cpu_weight": 300, "memory_high": "512M"})
        );
        let user = store.user("alice").unwrap().unwrap();
        assert_eq!(user.allocation.cpu_weight.get(), 300);
        assert_eq!(user.allocation.io_weight.get(), 100, "untouched");
        assert_eq!(user.allocation.memory_high, Size::Bytes(512 << 20));
        assert_eq!(user.allocation.cpu, Cpu::Infinity);
        assert_eq!(user.allocation.memory, Size::Bytes(1 << 30));
        assert_eq!(user.allocation.disk, Allocation::default().disk);
        assert_eq!(user.email, None);
        assert_eq!(user.role, Role::Admin);
        assert!(!user.active);
        assert_eq!(user.failures, failures, "failure count untouched");
        assert_eq!(user.updated_at, Timestamp(200));

        let missing = store.write(|tx| tx.update_user("bob", &changes, Timestamp(1)));
        assert!(matches!(missing, Err(StoreError::UserNotFound(_))));
    });
}

#[test]
fn a_failed_write_leaves_nothing_behind() {
    each_backend(|f| {
        let mut store = f.open();
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
        assert!(store.user("alice").unwrap().is_none(), "{}", f.name);
        assert!(store.audit_log("alice", 10).unwrap().is_empty());
        // The connection is still good for the next write.
        store
            .write(|tx| tx.insert_user(&new_user("alice"), Timestamp(2)))
            .unwrap();
    });
}

#[test]
fn delete_cascades_and_audit_survives() {
    each_backend(|f| {
        let mut store = f.open();
        store
            .write(|tx| {
                tx.insert_user(&new_user("alice"), Timestamp(1))?;
                tx.insert_api_session("t1", "alice", Timestamp(1), Timestamp(100))?;
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
        assert_eq!(f.number("SELECT COUNT(*) FROM resource_allocations"), 0);
        assert_eq!(f.number("SELECT COUNT(*) FROM api_sessions"), 0);
        let log = store.audit_log("alice", 10).unwrap();
        assert_eq!(
            log.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
            ["user.add", "user.del"]
        );
        assert_eq!(log[0].detail, serde_json::json!({"role": "user"}));
    });
}

#[test]
fn hand_edited_nonsense_is_reported_not_guessed() {
    each_backend(|f| {
        let mut store = f.open();
        store
            .write(|tx| tx.insert_user(&new_user("alice"), Timestamp(1)))
            .unwrap();
        f.execute(r#"UPDATE resource_allocations SET limits = '{"memory": "lots"}'"#);
        let err = store.user("alice").unwrap_err().to_string();
        assert!(err.contains("memory"), "{err}");
    });
}

#[test]
fn parallel_writers_lose_no_failure_count() {
    each_backend(|f| {
        f.open()
            .write(|tx| tx.insert_user(&new_user("alice"), Timestamp(1)))
            .unwrap();
        let policy = LockoutPolicy {
            deny: 0,
            ..Default::default()
        };
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    let mut store = f.open();
                    for _ in 0..25 {
                        store
                            .write(|tx| {
                                let (state, _) = tx.login_state("alice")?.unwrap();
                                tx.set_failures(
                                    "alice",
                                    &policy.after_failure(&state, Timestamp(10)),
                                    Timestamp(10),
                                )
                            })
                            .unwrap();
                    }
                });
            }
        });
        assert_eq!(
            f.open().user("alice").unwrap().unwrap().failures.count,
            200,
            "{}",
            f.name
        );
    });
}

#[test]
fn api_sessions_expire_and_end_with_the_password() {
    each_backend(|f| {
        let mut store = f.open();
        store
            .write(|tx| {
                tx.insert_user(&new_user("alice"), Timestamp(1))?;
                tx.insert_api_session("old", "alice", Timestamp(1), Timestamp(50))?;
                tx.insert_api_session("new", "alice", Timestamp(1), Timestamp(500))
            })
            .unwrap();
        let alice = |token: &str, now| store.api_session(token, Timestamp(now)).unwrap();
        assert!(alice("old", 10).is_some());
        assert!(alice("old", 50).is_none(), "expired");
        assert!(alice("nope", 10).is_none());
        assert_eq!(
            store
                .write(|tx| tx.prune_api_sessions(Timestamp(60)))
                .unwrap(),
            1
        );
        assert!(store.write(|tx| tx.delete_api_session("new")).unwrap());
        assert!(!store.write(|tx| tx.delete_api_session("new")).unwrap());
        store
            .write(|tx| {
                tx.insert_api_session("third", "alice", Timestamp(1), Timestamp(500))?;
                tx.set_password_hash("alice", "$argon2id$other", Timestamp(70))
            })
            .unwrap();
        assert!(store.api_session("third", Timestamp(80)).unwrap().is_none());
        let unknown =
            store.write(|tx| tx.insert_api_session("x", "bob", Timestamp(1), Timestamp(9)));
        assert!(matches!(unknown, Err(StoreError::UserNotFound(_))));
    });
}

#[test]
fn history_counters_and_sample_hashes() {
    each_backend(|f| {
        let mut store = f.open();
        assert_eq!(store.sample_hash("anyone").unwrap(), None);
        store
            .write(|tx| {
                tx.insert_user(&new_user("alice"), Timestamp(1))?;
                tx.insert_user(&new_user("bob"), Timestamp(1))
            })
            .unwrap();
        assert_eq!(
            store.sample_hash("zed").unwrap().as_deref(),
            Some("$argon2id$fake")
        );
        let sample = |user: &str, at, memory| Sample {
            username: user.into(),
            at: Timestamp(at),
            cpu_nsec: Some(at as u64 * 1000),
            memory_bytes: Some(memory),
            tasks: Some(3),
            disk_bytes: None,
            gpu_memory_bytes: None,
        };
        let inserted = store
            .write(|tx| {
                tx.insert_samples(&[
                    sample("alice", 100, 10),
                    sample("alice", 130, 30),
                    sample("bob", 100, 5),
                    sample("gone", 100, 5),
                ])
            })
            .unwrap();
        assert_eq!(inserted, 3, "{}", f.name);
        let alice = store
            .samples(Some("alice"), Timestamp(0), Timestamp(1000), 100)
            .unwrap();
        assert_eq!(alice.len(), 1, "{alice:?}");
        assert_eq!(alice[0].at, Timestamp(100));
        let everyone = store
            .samples(None, Timestamp(0), Timestamp(1000), 1000)
            .unwrap();
        assert_eq!(everyone.len(), 2);
        assert_eq!(everyone[0].memory_bytes, Some(20), "the mean");
        assert_eq!(everyone[0].cpu_nsec, Some(130_000), "the highest");
        assert_eq!(store.sample_count().unwrap(), 3);
        let pruned = store
            .write(|tx| tx.prune_samples(Timestamp(110), 1))
            .unwrap();
        assert_eq!(pruned, 2);
        assert_eq!(store.sample_count().unwrap(), 1);

        store
            .write(|tx| {
                tx.count(Counter::LoginFailure)?;
                tx.count(Counter::LoginFailure)
            })
            .unwrap();
        assert_eq!(store.counter(Counter::LoginFailure).unwrap(), 2);
        assert_eq!(store.counter(Counter::Lockout).unwrap(), 0);
    });
}

#[test]
fn limit_events_merge_show_once_and_prune() {
    use crate::model::events::{EventKind, LimitEvent};
    each_backend(|f| {
        let mut store = f.open();
        store
            .write(|tx| {
                tx.insert_user(&new_user("alice"), Timestamp(1))?;
                tx.insert_user(&new_user("bob"), Timestamp(1))
            })
            .unwrap();
        let event = |user: &str, node: &str, kind, at: i64, count, names: &[&str]| LimitEvent {
            username: user.into(),
            node: node.into(),
            first_at: Timestamp(at),
            at: Timestamp(at + 5),
            kind,
            count,
            throttled_usec: if kind == EventKind::CpuThrottled {
                count * 1000
            } else {
                0
            },
            limit: Some("8G".into()),
            processes: names.iter().map(|n| n.to_string()).collect(),
            shown: false,
        };
        let recorded = store
            .write(|tx| {
                tx.record_limit_events(&[
                    event("alice", "n1", EventKind::OomKill, 100, 1, &["python3"]),
                    event("alice", "n1", EventKind::OomKill, 110, 1, &["a,\"b\"\n"]),
                    event("alice", "n1", EventKind::CpuThrottled, 100, 4, &[]),
                    // Ten seconds on: the same run of throttling.
                    event("alice", "n1", EventKind::CpuThrottled, 110, 6, &[]),
                    // Another node's: a row of its own.
                    event("alice", "n2", EventKind::CpuThrottled, 110, 1, &[]),
                    // Past the window: a new row.
                    event("alice", "n1", EventKind::CpuThrottled, 100 + 3700, 2, &[]),
                    event("bob", "n1", EventKind::MemoryHigh, 120, 3, &[]),
                    event("gone", "n1", EventKind::OomKill, 120, 1, &[]),
                ])
            })
            .unwrap();
        assert_eq!(recorded, 7, "{}: the unknown user's is left out", f.name);
        let alice = store.limit_events(Some("alice"), 100).unwrap();
        assert_eq!(alice.len(), 5, "{}: {alice:?}", f.name);
        assert_eq!(alice[0].first_at, Timestamp(3800), "newest first");
        let merged = alice
            .iter()
            .find(|e| {
                e.kind == EventKind::CpuThrottled && e.node == "n1" && e.first_at == Timestamp(100)
            })
            .unwrap();
        assert_eq!((merged.count, merged.throttled_usec), (10, 10_000));
        assert_eq!(merged.at, Timestamp(115), "last seen");
        let odd = alice
            .iter()
            .find(|e| e.first_at == Timestamp(110) && e.kind == EventKind::OomKill);
        assert_eq!(odd.unwrap().processes, vec!["a,\"b\"\n".to_string()]);
        assert_eq!(store.limit_events(None, 3).unwrap().len(), 3, "the limit");

        // A login takes them once.
        let taken = store.write(|tx| tx.take_unshown_events("alice")).unwrap();
        assert_eq!(taken.len(), 5);
        assert_eq!(taken[0].first_at, Timestamp(100), "oldest first");
        assert!(store
            .write(|tx| tx.take_unshown_events("alice"))
            .unwrap()
            .is_empty());
        assert!(store
            .limit_events(Some("alice"), 100)
            .unwrap()
            .iter()
            .all(|e| e.shown));
        assert!(!store.limit_events(Some("bob"), 100).unwrap()[0].shown);
        // Throttling after the notice starts a row of its own.
        store
            .write(|tx| {
                tx.record_limit_events(&[event(
                    "alice",
                    "n1",
                    EventKind::CpuThrottled,
                    3810,
                    1,
                    &[],
                )])
            })
            .unwrap();
        let fresh = store.write(|tx| tx.take_unshown_events("alice")).unwrap();
        assert_eq!(fresh.len(), 1);
        assert_eq!(fresh[0].count, 1);

        // The bounds: by age (this node's rows on a shared database), then
        // by count.
        let pruned = store
            .write(|tx| tx.prune_limit_events(Timestamp(112), 1000))
            .unwrap();
        let expected_by_age = if f.name == "sqlite" { 1 } else { 0 };
        assert_eq!(pruned, expected_by_age, "{}", f.name);
        // Deleting a user deletes their events.
        store.write(|tx| tx.delete_user("bob")).unwrap();
        assert!(store.limit_events(Some("bob"), 10).unwrap().is_empty());
    });
}

#[test]
fn gpu_use_follows_grants_per_node() {
    each_backend(|f| {
        let mut store = f.open();
        store
            .write(|tx| {
                tx.insert_user(&new_user("alice"), Timestamp(1))?;
                tx.insert_user(&new_user("bob"), Timestamp(1))
            })
            .unwrap();
        let update = |user: &str, gpu: &str, used| GpuUseUpdate {
            username: user.into(),
            gpu: gpu.into(),
            used,
        };
        store
            .write(|tx| {
                tx.record_gpu_use(
                    "n1",
                    Timestamp(100),
                    &[
                        update("alice", "GPU-A", false),
                        update("bob", "GPU-B", true),
                        update("gone", "GPU-C", true),
                    ],
                )?;
                tx.record_gpu_use("n2", Timestamp(100), &[update("bob", "GPU-Z", false)])
            })
            .unwrap();
        let all = store.gpu_use(None).unwrap();
        assert_eq!(all.len(), 3, "{}: {all:?}", f.name);
        let bob = store.gpu_use(Some("bob")).unwrap();
        assert_eq!(bob[0].last_used, Some(Timestamp(100)));
        assert_eq!(bob[1].node, "n2");
        // Later: alice uses hers; bob's grant on n1 was taken away.
        store
            .write(|tx| {
                tx.record_gpu_use("n1", Timestamp(200), &[update("alice", "GPU-A", true)])?;
                tx.record_gpu_use("n1", Timestamp(300), &[update("alice", "GPU-A", false)])
            })
            .unwrap();
        let alice = store.gpu_use(Some("alice")).unwrap();
        assert_eq!(alice.len(), 1);
        assert_eq!(
            (alice[0].granted_since, alice[0].last_used),
            (Timestamp(100), Some(Timestamp(200))),
            "{}",
            f.name
        );
        let bob = store.gpu_use(Some("bob")).unwrap();
        assert_eq!(bob.len(), 1, "{}: n2's row stays", f.name);
        assert_eq!(bob[0].node, "n2");
        store.write(|tx| tx.delete_user("alice")).unwrap();
        assert!(store.gpu_use(Some("alice")).unwrap().is_empty());
    });
}

/// A listener that accepts connections and never says a word: a server
/// hung, or a network that swallows packets after the handshake.
fn silent_server() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

fn unreachable_settings(cache: &Path, port: u16) -> PostgresSettings {
    PostgresSettings {
        url: format!("postgresql://diycloud@127.0.0.1:{port}/diycloud?sslmode=disable"),
        password_file: None,
        cache: cache.to_path_buf(),
        connect_timeout: Duration::from_secs(1),
        ca_file: PathBuf::from("/nonexistent"),
        lockout: LockoutPolicy::default(),
        cache_max_age: Duration::from_secs(3600),
    }
}

/// Stamps the cache's last full refresh at `ago` seconds before now (what
/// `slicectl cache refresh` writes when the server answers).
fn stamp_refresh(cache: &Path, ago: i64) {
    let now = Timestamp::from(std::time::SystemTime::now());
    let mut store = SqliteStore::open(cache).unwrap();
    store
        .write(|tx| tx.set_cache_time("refreshed_at", Timestamp(now.0 - ago)))
        .unwrap();
}

/// The node's probe, while the server cannot be reached: it fails, and
/// records the outage.
fn probe_finds_it_unreachable(settings: &PostgresSettings) {
    let err = cluster::ClusterStore::probe(settings).err().unwrap();
    assert!(err.is_unreachable(), "{err}");
    let cache = SqliteStore::open(&settings.cache).unwrap();
    assert!(cache.cache_state().unwrap().outage_since.is_some());
}

#[test]
fn a_silent_server_costs_no_more_than_the_timeout_and_the_cache_answers_only_in_an_outage_the_probe_saw(
) {
    let dir = tempfile::tempdir().unwrap();
    let (_listener, port) = silent_server();
    let settings = unreachable_settings(&dir.path().join("cache.db"), port);
    let db = Database::Postgres(Box::new(settings.clone()));
    // A login alone cannot declare the server gone (its caller may have
    // stopped it, or starved it of descriptors): refused.
    let started = std::time::Instant::now();
    let err = Store::open_database(&db).err().unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(1800),
        "waited {took:?} for a 1 s timeout"
    );
    assert!(err.is_unreachable(), "{err}");
    assert!(err.to_string().contains("probe has not found"), "{err}");
    // The probe finds it unreachable too; a cache never refreshed whole
    // still answers nobody.
    probe_finds_it_unreachable(&settings);
    let err = Store::open_database(&db).err().unwrap();
    assert!(err.to_string().contains("never refreshed whole"), "{err}");
    // Refreshed an hour and a minute ago, with cache_max_age at an hour: too old.
    stamp_refresh(&settings.cache, 3660);
    let err = Store::open_database(&db).err().unwrap();
    assert!(err.to_string().contains("cache_max_age"), "{err}");
    // Refreshed a minute ago: the cache answers.
    stamp_refresh(&settings.cache, 60);
    let mut store = Store::open_database(&db).unwrap();
    let cluster = store.as_cluster().unwrap();
    assert!(cluster.offline_reason().unwrap().contains("no answer"));
    // An empty cache knows nobody; an admin change is refused whole.
    assert!(store.credentials("alice").unwrap().is_none());
    let add = store.write(|tx| tx.insert_user(&new_user("alice"), Timestamp(1)));
    let err = add.unwrap_err();
    assert!(err.is_unreachable(), "{err}");
    assert!(
        err.to_string()
            .contains("a change to the user base needs it"),
        "{err}"
    );
    assert_eq!(store.users().unwrap(), vec![]);
}

#[test]
fn a_refused_connection_is_offline_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (listener, port) = silent_server();
    drop(listener);
    let settings = unreachable_settings(&dir.path().join("cache.db"), port);
    let db = Database::Postgres(Box::new(settings.clone()));
    let started = std::time::Instant::now();
    let err = Store::open_database(&db).err().unwrap();
    assert!(started.elapsed() < Duration::from_millis(500));
    assert!(err.is_unreachable(), "{err}");
    probe_finds_it_unreachable(&settings);
    stamp_refresh(&settings.cache, 0);
    let store = Store::open_database(&db).unwrap();
    assert!(store.as_cluster().unwrap().offline_reason().is_some());
}

#[test]
fn only_the_networks_answer_is_an_outage() {
    use std::io::{Error, ErrorKind};
    let network = postgres::is_network_failure;
    for code in [
        nix::libc::ECONNREFUSED,
        nix::libc::ECONNRESET,
        nix::libc::EHOSTUNREACH,
        nix::libc::ENETUNREACH,
        nix::libc::ETIMEDOUT,
    ] {
        assert!(network(&Error::from_raw_os_error(code)), "{code}");
    }
    // What a caller's limits or this side's TLS check make fail is not.
    for code in [
        nix::libc::EMFILE,
        nix::libc::ENFILE,
        nix::libc::ENOMEM,
        nix::libc::EAGAIN,
        nix::libc::EACCES,
        nix::libc::EINTR,
    ] {
        assert!(!network(&Error::from_raw_os_error(code)), "{code}");
    }
    assert!(!network(&Error::new(
        ErrorKind::InvalidData,
        "invalid peer certificate: UnknownIssuer"
    )));
    assert!(network(&Error::from(ErrorKind::UnexpectedEof)));
}

#[test]
fn the_probe_ends_an_outage_when_it_reaches_the_server() {
    let Some(server) = test_server() else {
        eprintln!("PostgreSQL: skipped (DIYCLOUD_TEST_PG_URL is not set)");
        return;
    };
    let f = Fixture::postgres(&server);
    f.open()
        .write(|tx| tx.insert_user(&new_user("alice"), Timestamp(1)).map(drop))
        .unwrap();
    let (listener, port) = silent_server();
    drop(listener);
    let offline = unreachable_settings(&f.settings().cache, port);
    probe_finds_it_unreachable(&offline);
    // Back: the probe that reaches the server refreshes the cache and ends
    // the outage; a login that then fails to connect is refused again.
    let mut cluster = cluster::ClusterStore::probe(f.settings()).unwrap();
    assert_eq!(cluster.refresh_cache().unwrap().users, 1);
    assert_eq!(cluster.cache_state().unwrap().outage_since, None);
    let err = Store::open_database(&Database::Postgres(Box::new(offline)))
        .err()
        .unwrap();
    assert!(err.to_string().contains("probe has not found"), "{err}");
}

#[test]
fn offline_logins_use_the_cache_and_their_failures_merge_when_back() {
    let Some(server) = test_server() else {
        eprintln!("PostgreSQL: skipped (DIYCLOUD_TEST_PG_URL is not set)");
        return;
    };
    let f = Fixture::postgres(&server);
    let policy = LockoutPolicy::default();
    {
        let mut store = f.open();
        store
            .write(|tx| {
                tx.insert_user(&new_user("alice"), Timestamp(1))?;
                tx.insert_user(&new_user("bob"), Timestamp(1))?;
                tx.set_failures(
                    "alice",
                    &FailureState {
                        count: 1,
                        window_start: Some(Timestamp(1000)),
                        locked_at: None,
                    },
                    Timestamp(1000),
                )
            })
            .unwrap();
        // A login's lookup copies alice (not bob) into the cache.
        assert!(store.credentials("alice").unwrap().is_some());
    }
    let (listener, port) = silent_server();
    drop(listener);
    let offline_settings = PostgresSettings {
        lockout: policy,
        ..unreachable_settings(&f.settings().cache, port)
    };
    probe_finds_it_unreachable(&offline_settings);
    stamp_refresh(&offline_settings.cache, 0);
    let offline_db = Database::Postgres(Box::new(offline_settings));
    {
        let mut offline = Store::open_database(&offline_db).unwrap();
        let (alice, hash) = offline.credentials("alice").unwrap().unwrap();
        assert_eq!(hash, "$argon2id$fake");
        assert_eq!(alice.failures.count, 1);
        assert!(
            offline.credentials("bob").unwrap().is_none(),
            "never looked up here"
        );
        // Two wrong passwords, as the login path records them.
        for at in [1010, 1020] {
            offline
                .write(|tx| {
                    let (state, _) = tx.login_state("alice")?.unwrap();
                    let after = policy.after_failure(&state, Timestamp(at));
                    tx.set_failures("alice", &after, Timestamp(at))?;
                    tx.count(Counter::LoginFailure)
                })
                .unwrap();
        }
        assert_eq!(offline.user("alice").unwrap().unwrap().failures.count, 3);
        // A password change needs the server: refused, nothing changed.
        let change = offline.write(|tx| tx.set_password_hash("alice", "new", Timestamp(1030)));
        assert!(change.unwrap_err().is_unreachable());
        assert_eq!(
            offline.credentials("alice").unwrap().unwrap().1,
            "$argon2id$fake"
        );
    }
    // Meanwhile another node counted one more failure on the server.
    f.open()
        .write(|tx| {
            let (state, _) = tx.login_state("alice")?.unwrap();
            tx.set_failures(
                "alice",
                &policy.after_failure(&state, Timestamp(1015)),
                Timestamp(1015),
            )
        })
        .unwrap();
    // Back online: the node's two failures are added to the server's two.
    let store = Store::open_database(&Database::Postgres(Box::new(PostgresSettings {
        lockout: policy,
        ..f.settings().clone()
    })))
    .unwrap();
    assert!(store.as_cluster().unwrap().offline_reason().is_none());
    let alice = store.user("alice").unwrap().unwrap();
    assert_eq!(alice.failures.count, 4, "1 + 1 elsewhere + 2 offline");
    assert_eq!(
        store.counter(Counter::LoginFailure).unwrap(),
        2,
        "counted offline"
    );
    assert_eq!(
        store
            .as_cluster()
            .unwrap()
            .cache_state()
            .unwrap()
            .pending_events,
        0,
        "merged once"
    );
}

#[test]
fn a_server_that_refuses_us_is_an_error_not_an_outage() {
    let Some(server) = test_server() else {
        eprintln!("PostgreSQL: skipped (DIYCLOUD_TEST_PG_URL is not set)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong-password");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();
    let settings = PostgresSettings {
        password_file: Some(wrong.clone()),
        cache: dir.path().join("cache.db"),
        ..server
    };
    let err = Store::open_database(&Database::Postgres(Box::new(settings.clone())))
        .err()
        .unwrap();
    assert!(!err.is_unreachable(), "{err}");
    assert!(
        err.to_string().contains("password authentication failed"),
        "{err}"
    );
    // A password file others may read is refused before any connection.
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Store::open_database(&Database::Postgres(Box::new(settings)))
        .err()
        .unwrap();
    assert!(err.to_string().contains("readable by others"), "{err}");
}

#[test]
fn a_server_whose_certificate_does_not_chain_to_the_ca_file_is_not_believed() {
    let Some(server) = test_server() else {
        eprintln!("PostgreSQL: skipped (DIYCLOUD_TEST_PG_URL is not set)");
        return;
    };
    if !server.url.contains("sslmode=require") {
        eprintln!("PostgreSQL: skipped (the test server's URL does not ask for TLS)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The system's CA bundle: it does not hold the test server's CA.
    let settings = PostgresSettings {
        ca_file: PathBuf::from("/etc/ssl/certs/ca-certificates.crt"),
        cache: dir.path().join("cache.db"),
        ..server
    };
    // A TLS failure is this side's verdict, not the network's: an error,
    // never an outage the cache stands in for (even during one).
    let err = Store::open_database(&Database::Postgres(Box::new(settings.clone())))
        .err()
        .unwrap();
    assert!(!err.is_unreachable(), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    let err = cluster::ClusterStore::probe(&settings).err().unwrap();
    assert!(!err.is_unreachable(), "{err}");
    let cache = SqliteStore::open(&settings.cache).unwrap();
    assert_eq!(cache.cache_state().unwrap().outage_since, None);
}

#[test]
fn the_audit_log_is_pruned_by_age_then_to_its_newest_rows() {
    each_backend(|f| {
        let mut store = f.open();
        let entry = |tx: &dyn Transaction, at: i64, who: &str| {
            tx.audit(
                Timestamp(at),
                "tester",
                "api.login",
                who,
                &serde_json::json!({"n": at}),
            )
        };
        store
            .write(|tx| {
                for at in [100, 200, 300, 400, 500, 600] {
                    entry(tx, at, "alice")?;
                }
                entry(tx, 350, "bob")
            })
            .unwrap();
        let count = || f.number("SELECT count(*) FROM audit_log");
        assert_eq!(count(), 7, "{}", f.name);

        // Nothing older than `oldest`, nothing past the bound: nothing goes.
        let pruned = store
            .write(|tx| tx.prune_audit_log(Timestamp(50), 100))
            .unwrap();
        assert_eq!((pruned, count()), (0, 7), "{}", f.name);

        // By age: 100 and 200 are older than 250.
        let pruned = store
            .write(|tx| tx.prune_audit_log(Timestamp(250), 100))
            .unwrap();
        assert_eq!((pruned, count()), (2, 5), "{}", f.name);

        // By count: the newest 3 stay (400, 500, 600); 300 and bob's 350 go.
        let pruned = store
            .write(|tx| tx.prune_audit_log(Timestamp(250), 3))
            .unwrap();
        assert_eq!((pruned, count()), (2, 3), "{}", f.name);
        let kept: Vec<String> = store
            .audit_log("alice", 10)
            .unwrap()
            .iter()
            .map(|e| e.detail["n"].to_string())
            .collect();
        assert_eq!(kept, ["400", "500", "600"], "{}", f.name);
        assert!(store.audit_log("bob", 10).unwrap().is_empty(), "{}", f.name);

        // An entry written in the same transaction as the pruning counts.
        let pruned = store
            .write(|tx| {
                entry(tx, 700, "alice")?;
                tx.prune_audit_log(Timestamp(250), 3)
            })
            .unwrap();
        assert_eq!((pruned, count()), (1, 3), "{}", f.name);
    });
}

/// The allocation as schema versions before `limits` held it (SQLite 8,
/// PostgreSQL 4: a column per limit, CPU as cores), with data, migrated
/// into the one `limits` column with every value kept.
#[test]
fn the_allocation_columns_migrate_into_limits_with_their_values() {
    // username, cpu_limit, mem_limit, memory_high, tasks_limit, disk_quota,
    // gpus, cpu_weight, io_weight; then the CPU as it must read back.
    let rows = [
        (
            "ann", "NULL", "2G", "infinity", "4096", "5G", "none", "100", "100", "infinity",
        ),
        (
            "ben", "1.5", "512M", "256M", "infinity", "infinity", "0,1", "300", "50", "1.5",
        ),
        (
            "cat", "0.05", "1536G", "1G", "16", "1K", "all", "1", "10000", "0.05",
        ),
        (
            "dan", "2", "infinity", "infinity", "1", "8E", "none", "100", "100", "2",
        ),
        (
            "eve", "12.25", "1000", "infinity", "100", "3T", "1", "100", "100", "12.25",
        ),
        (
            "fay", "4096", "2G", "infinity", "4096", "5G", "none", "100", "100", "4096",
        ),
    ];
    let migrate = |f: &Fixture| {
        for (i, (name, cpu, memory, high, tasks, disk, gpus, cpu_w, io_w, _)) in
            rows.iter().enumerate()
        {
            let id = i + 1;
            f.execute(&format!(
                "INSERT INTO users (id, username, password_hash, created_at, updated_at) \
                 VALUES ({id}, '{name}', 'h', 1, 1); \
                 INSERT INTO resource_allocations (user_id, cpu_limit, mem_limit, memory_high, \
                 tasks_limit, disk_quota, gpus, cpu_weight, io_weight) \
                 VALUES ({id}, {cpu}, '{memory}', '{high}', '{tasks}', '{disk}', '{gpus}', \
                 '{cpu_w}', '{io_w}')"
            ));
        }
        Store::init_database(&f.db).unwrap();
        let mut store = f.open();
        for (name, _, memory, high, tasks, disk, gpus, cpu_w, io_w, cpu) in rows {
            let user = store.user(name).unwrap().unwrap();
            let texts: Vec<(&str, String)> = user.allocation.texts();
            let want = [
                ("cpu", cpu),
                ("memory", memory),
                ("memory_high", high),
                ("tasks", tasks),
                ("disk", disk),
                ("gpus", gpus),
                ("cpu_weight", cpu_w),
                ("io_weight", io_w),
            ];
            for (key, text) in want {
                let read = &texts.iter().find(|(k, _)| *k == key).unwrap().1;
                let canonical = {
                    let mut a = Allocation::default();
                    a.set_text(key, text).unwrap();
                    a.texts().into_iter().find(|(k, _)| *k == key).unwrap().1
                };
                assert_eq!(read, &canonical, "{} {name} {key}", f.name);
            }
        }
        // A change after the migration merges into the rest.
        let changes = UserChanges {
            limits: LimitChanges {
                memory: Some("4G".parse().unwrap()),
                ..LimitChanges::default()
            },
            ..UserChanges::default()
        };
        store
            .write(|tx| tx.update_user("ben", &changes, Timestamp(2)))
            .unwrap();
        let ben = store.user("ben").unwrap().unwrap();
        assert_eq!(ben.allocation.memory, Size::Bytes(4 << 30), "{}", f.name);
        assert_eq!(ben.allocation.cpu, Cpu::Percent(150), "{}", f.name);
        assert_eq!(ben.allocation.io_weight.get(), 50, "{}", f.name);
    };
    migrate(&Fixture::sqlite_at(Some(8)));
    match test_server() {
        Some(server) => migrate(&Fixture::postgres_at(&server, Some(4))),
        None => eprintln!("PostgreSQL: skipped (DIYCLOUD_TEST_PG_URL is not set)"),
    }
}
