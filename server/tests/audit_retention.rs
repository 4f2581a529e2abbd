//! The server keeps the audit log within `[audit] keep` and `max_rows`:
//! every API login adds an entry, and a running server prunes the log on
//! its own, by age and by count.
#![deny(unsafe_code)]
// Test code: a panic is how a failed check is reported; waiting for the
// server's pruning round is what this test is about.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use libdiycloud::store::{Database, Store};

/// The audit entries of `boss` (every login here is theirs), oldest first.
fn entries(server: &Server) -> Vec<libdiycloud::store::AuditEntry> {
    let db = Database::Sqlite(server.dir.path().join("db"));
    Store::open_database(&db)
        .unwrap()
        .audit_log("boss", 1000)
        .unwrap()
}

/// Waits (a few pruning rounds at most) until `done` holds for the log.
fn wait_for(server: &Server, what: &str, done: impl Fn(&[libdiycloud::store::AuditEntry]) -> bool) {
    let start = Instant::now();
    loop {
        let now = entries(server);
        if done(&now) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{what}: the log is still {} entries: {now:?}",
            now.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_running_server_prunes_the_audit_log_by_count_and_age() {
    let server = start_with(
        1000,
        "\n[audit]\ninterval = \"1s\"\nkeep = \"1d\"\nmax_rows = 5",
    );
    for _ in 0..12 {
        server.token("boss", ADMIN_PASSWORD);
    }
    wait_for(&server, "at most max_rows = 5 entries", |log| {
        log.len() <= 5
    });
    let log = entries(&server);
    assert_eq!(log.len(), 5, "{log:?}");
    assert!(log.iter().all(|e| e.action == "api.login"), "{log:?}");

    // Two days on: those five are past keep = 1d; a new login stays.
    server.clock.fetch_add(2 * 24 * 3600, Ordering::SeqCst);
    server.token("boss", ADMIN_PASSWORD);
    wait_for(&server, "only the entry newer than keep = 1d", |log| {
        log.len() == 1
    });
}

#[test]
fn the_default_bound_holds_without_any_audit_setting() {
    let config = libdiycloud::config::Config::parse("").unwrap();
    assert!(
        config.audit.interval > 0 && config.audit.max_rows > 0 && config.audit.keep > 0,
        "{:?}",
        config.audit
    );
}
