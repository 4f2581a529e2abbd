//! The hooks with a scripted PAM handle, a clock that is set, not read, and
//! fake systemd and account ports, on a real SQLite database. The same
//! paths through real libpam are in `slicectl/tests/pam_stack.rs` and the
//! VM tier.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::ffi::CString;
use std::path::PathBuf;
use std::time::Duration;

use libdiycloud::hashing::{HashParams, Hasher};
use libdiycloud::model::{Allocation, Timestamp, Username};
use libdiycloud::ports::Ports;
use libdiycloud::store::{NewUser, Store, UserChanges};
use libdiycloud::testing::{FakeAccounts, FakeGpus, FakeQuotas, FakeSlice};
use pam::constants::PamResultCode::{self, *};

use super::*;
use crate::error::to_code;

/// A PAM handle that plays a script: the user name, then the passwords in
/// the order the hook must ask for them. Every password must be asked for.
struct Scripted {
    user: Vec<u8>,
    authtoks: VecDeque<(Authtok, Result<Vec<u8>, HookError>)>,
    told: RefCell<Vec<String>>,
    informed: RefCell<Vec<String>>,
    tty: Option<String>,
    logs: RefCell<Vec<(Level, String)>>,
    env: Vec<(String, String)>,
}

impl Scripted {
    fn new(user: &str) -> Self {
        Self {
            user: user.as_bytes().to_vec(),
            authtoks: VecDeque::new(),
            told: RefCell::default(),
            informed: RefCell::default(),
            tty: Some("ssh".into()),
            logs: RefCell::default(),
            env: Vec::new(),
        }
    }

    fn then(mut self, which: Authtok, password: &str) -> Self {
        self.authtoks
            .push_back((which, Ok(password.as_bytes().to_vec())));
        self
    }

    fn logged(&self, text: &str) -> bool {
        self.logs.borrow().iter().any(|(_, m)| m.contains(text))
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            assert!(
                self.authtoks.is_empty(),
                "passwords never asked for: {:?}",
                self.authtoks
            );
        }
    }
}

impl PamHandler for Scripted {
    fn user(&mut self) -> Result<Vec<u8>, HookError> {
        Ok(self.user.clone())
    }

    fn authtok(&mut self, which: Authtok) -> Result<zeroize::Zeroizing<Vec<u8>>, HookError> {
        let (expected, answer) = self
            .authtoks
            .pop_front()
            .unwrap_or_else(|| panic!("asked for {which:?}, which the script does not have"));
        assert_eq!(which, expected, "asked for the wrong password");
        answer.map(zeroize::Zeroizing::new)
    }

    fn service(&self) -> Option<String> {
        Some("scripted".into())
    }

    fn tell(&self, message: &str) {
        self.told.borrow_mut().push(message.to_owned());
    }

    fn tty(&self) -> Option<String> {
        self.tty.clone()
    }

    fn inform(&self, message: &str) {
        self.informed.borrow_mut().push(message.to_owned());
    }

    fn log(&self, level: Level, message: &str) {
        self.logs.borrow_mut().push((level, message.to_owned()));
    }

    fn putenv(&mut self, name: &str, value: &str) -> Result<(), HookError> {
        self.env.push((name.into(), value.into()));
        Ok(())
    }
}

/// What the fake systemd was asked to set, in order (`UNIT PROPERTIES`).
fn sent_to_systemd(ports: &TestPorts) -> Vec<String> {
    ports
        .slice
        .journal
        .borrow()
        .iter()
        .filter_map(|entry| entry.strip_prefix("set ").map(str::to_owned))
        .collect()
}

/// Fake systemd, alice's account at uid 1000 (as her record has it; a test
/// may change it), no quota filesystems and no GPUs (the host's own facts
/// would make these tests depend on the machine they run on).
type TestPorts = Ports<FakeSlice, FakeAccounts, FakeQuotas, FakeGpus>;

/// The machine: a settable clock, the caller, the managed group's members.
struct TestHost {
    now: Cell<i64>,
    caller_is_root: bool,
    /// `None`: the group does not exist.
    members: Option<Vec<&'static str>>,
    /// The real quota port: these configs name no quota filesystems, so it
    /// is never called (quota steps are tested in the library and the VM).
    ports: TestPorts,
}

impl Host for TestHost {
    type Slice = FakeSlice;
    type Accounts = FakeAccounts;
    type Quotas = FakeQuotas;
    type Gpus = FakeGpus;

    fn now(&self) -> Timestamp {
        Timestamp(self.now.get())
    }

    fn elapsed(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn caller_is_root(&self) -> bool {
        self.caller_is_root
    }

    fn membership(&self, user: &str, group: &str) -> Result<Membership, String> {
        assert_eq!(group, "diycloud");
        Ok(match &self.members {
            None => Membership::NoGroup,
            Some(members) if members.contains(&user) => Membership::Member,
            Some(_) if user == "nobody-at-all" => Membership::NoAccount,
            Some(_) => Membership::NotMember,
        })
    }

    fn ports(&self) -> &TestPorts {
        &self.ports
    }
}

const T0: i64 = 1_800_000_000;

struct Fixture {
    dir: tempfile::TempDir,
    db: PathBuf,
    config: PathBuf,
    host: TestHost,
}

fn fixture() -> Fixture {
    fixture_with("")
}

/// alice (uid 1000, in the managed group) with the password
/// "correct horse", cheap hashing, lockout after 3 failures for 60 s.
fn fixture_with(extra_config: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("d.db");
    let config = dir.path().join("d.toml");
    std::fs::write(
        &config,
        format!(
            "[password]\nmemory_kib = 64\niterations = 1\n[lockout]\ndeny = 3\nunlock_time = \"60s\"\n{extra_config}"
        ),
    )
    .unwrap();
    let (store, _) = Store::init(&db).unwrap();
    let hash = Hasher::new(HashParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    })
    .unwrap()
    .hash("correct horse")
    .unwrap();
    let mut new = NewUser::new(
        Username::parse("alice").unwrap(),
        hash,
        Allocation::default(),
    );
    new.uid = Some(1000);
    let mut store = store;
    store
        .write(|tx| tx.insert_user(&new, Timestamp(T0)))
        .unwrap();
    Fixture {
        dir,
        db,
        config,
        host: TestHost {
            now: Cell::new(T0),
            caller_is_root: false,
            members: Some(vec!["alice"]),
            ports: Ports {
                accounts: FakeAccounts::with(&[("alice", 1000)]),
                ..Ports::default()
            },
        },
    }
}

type HookFn = fn(&mut Scripted, &TestHost, &[&CStr], PamFlag) -> HookResult;

impl Fixture {
    fn args(&self) -> Vec<CString> {
        vec![
            CString::new(format!("db={}", self.db.display())).unwrap(),
            CString::new(format!("config={}", self.config.display())).unwrap(),
        ]
    }

    fn run(&self, hook: HookFn, handle: &mut Scripted, flags: PamFlag) -> PamResultCode {
        let args = self.args();
        let args: Vec<&CStr> = args.iter().map(CString::as_c_str).collect();
        to_code(hook(handle, &self.host, &args, flags))
    }

    fn login(&self, user: &str, password: &str) -> PamResultCode {
        let mut h = Scripted::new(user).then(Authtok::Current, password);
        self.run(authenticate, &mut h, 0)
    }

    fn account(&self, user: &str) -> (PamResultCode, Scripted) {
        let mut h = Scripted::new(user);
        let code = self.run(account, &mut h, 0);
        (code, h)
    }

    fn modify(&self, changes: UserChanges) {
        let mut store = Store::open(&self.db).unwrap();
        store
            .write(|tx| tx.update_user("alice", &changes, Timestamp(T0)))
            .unwrap();
    }

    fn break_database(&self) {
        std::fs::remove_file(&self.db).unwrap();
    }
}

#[test]
fn login_wrong_password_and_unknown_user() {
    let f = fixture();
    assert_eq!(f.login("alice", "correct horse"), PAM_SUCCESS);
    assert_eq!(f.login("alice", "wrong"), PAM_AUTH_ERR);
    assert_eq!(f.login("nobody-here", "correct horse"), PAM_USER_UNKNOWN);
    assert_eq!(f.login("al\u{fffd}ce", "correct horse"), PAM_USER_UNKNOWN);
}

#[test]
fn lockout_ends_when_the_clock_passes_unlock_time() {
    let f = fixture();
    for _ in 0..3 {
        assert_eq!(f.login("alice", "wrong"), PAM_AUTH_ERR);
    }
    assert_eq!(f.login("alice", "correct horse"), PAM_AUTH_ERR, "locked");
    let (code, h) = f.account("alice");
    assert_eq!(code, PAM_PERM_DENIED, "locked at the account stage too");
    assert!(h.told.borrow()[0].contains("locked"));

    f.host.now.set(T0 + 59);
    assert_eq!(
        f.login("alice", "correct horse"),
        PAM_AUTH_ERR,
        "59 s later"
    );
    f.host.now.set(T0 + 60);
    assert_eq!(f.login("alice", "correct horse"), PAM_SUCCESS, "60 s later");
    assert_eq!(f.account("alice").0, PAM_SUCCESS);
}

#[test]
fn account_states() {
    let f = fixture();
    assert_eq!(f.account("alice").0, PAM_SUCCESS);
    assert_eq!(f.account("bob").0, PAM_IGNORE, "not ours");
    f.modify(UserChanges {
        expires: Some(Some("2027-02-01".parse().unwrap())),
        ..UserChanges::default()
    });
    assert_eq!(f.account("alice").0, PAM_SUCCESS, "before the day");
    f.host.now.set(1_801_440_000); // 2027-02-01T00:00:00Z
    let (code, h) = f.account("alice");
    assert_eq!(code, PAM_ACCT_EXPIRED);
    assert!(h.told.borrow()[0].contains("expired"));

    f.modify(UserChanges {
        active: Some(false),
        ..UserChanges::default()
    });
    let mut h = Scripted::new("alice");
    assert_eq!(f.run(account, &mut h, PAM_SILENT), PAM_PERM_DENIED);
    assert!(h.told.borrow().is_empty(), "PAM_SILENT: nothing shown");
    assert!(h.logged("disabled"));
}

#[test]
fn a_broken_database_denies_managed_users_only() {
    let f = fixture();
    f.break_database();
    // alice is in the managed group: she fails closed.
    let (code, h) = f.account("alice");
    assert_eq!(code, PAM_AUTHINFO_UNAVAIL);
    assert!(h.logged("user database unavailable"));
    // root, a local account diycloud does not manage, a name with no account:
    // left to the rest of the stack.
    for user in ["root", "bob", "nobody-at-all"] {
        assert_eq!(f.account(user).0, PAM_IGNORE, "{user}");
    }
    // auth says "unavailable" for everyone (the stack goes on to pam_unix).
    assert_eq!(f.login("bob", "x"), PAM_AUTHINFO_UNAVAIL);
}

#[test]
fn without_the_managed_group_every_user_but_root_is_managed() {
    let mut f = fixture();
    f.host.members = None;
    f.break_database();
    assert_eq!(f.account("bob").0, PAM_AUTHINFO_UNAVAIL);
    assert_eq!(f.account("root").0, PAM_IGNORE);
}

#[test]
fn a_broken_config_uses_the_default_group() {
    let f = fixture();
    std::fs::write(&f.config, "this is not toml").unwrap();
    assert_eq!(f.account("alice").0, PAM_AUTHINFO_UNAVAIL);
    assert_eq!(f.account("bob").0, PAM_IGNORE);
    assert_eq!(f.login("alice", "correct horse"), PAM_AUTHINFO_UNAVAIL);
}

#[test]
fn bad_arguments_are_a_service_error() {
    let f = fixture();
    let mut h = Scripted::new("alice");
    let code = to_code(account(&mut h, &f.host, &[c"nullok"], 0));
    assert_eq!(code, PAM_SERVICE_ERR);
    assert!(h.logged("nullok"));
}

const UPDATE: PamFlag = PAM_UPDATE_AUTHTOK;

#[test]
fn a_user_changes_their_password() {
    let f = fixture();
    let mut prelim = Scripted::new("alice").then(Authtok::Old, "correct horse");
    assert_eq!(f.run(chauthtok, &mut prelim, PAM_PRELIM_CHECK), PAM_SUCCESS);
    let mut update = Scripted::new("alice")
        .then(Authtok::Old, "correct horse")
        .then(Authtok::Current, "battery staple");
    assert_eq!(f.run(chauthtok, &mut update, UPDATE), PAM_SUCCESS);
    assert_eq!(f.login("alice", "battery staple"), PAM_SUCCESS);

    let mut wrong_old = Scripted::new("alice").then(Authtok::Old, "nope");
    assert_eq!(
        f.run(chauthtok, &mut wrong_old, PAM_PRELIM_CHECK),
        PAM_AUTH_ERR
    );

    let mut short = Scripted::new("alice")
        .then(Authtok::Old, "battery staple")
        .then(Authtok::Current, "short");
    assert_eq!(f.run(chauthtok, &mut short, UPDATE), PAM_AUTHTOK_ERR);
    assert!(short.told.borrow()[0].starts_with("BAD PASSWORD"));
}

#[test]
fn root_sets_a_password_without_the_old_one() {
    let mut f = fixture();
    f.host.caller_is_root = true;
    let mut prelim = Scripted::new("alice");
    assert_eq!(f.run(chauthtok, &mut prelim, PAM_PRELIM_CHECK), PAM_SUCCESS);
    let mut update = Scripted::new("alice").then(Authtok::Current, "set by root");
    assert_eq!(f.run(chauthtok, &mut update, UPDATE), PAM_SUCCESS);
    assert_eq!(f.login("alice", "set by root"), PAM_SUCCESS);
}

#[test]
fn others_pass_the_new_password_on_even_with_the_database_broken() {
    let f = fixture();
    let mut bob = Scripted::new("bob").then(Authtok::Current, "bob's new one");
    assert_eq!(f.run(chauthtok, &mut bob, UPDATE), PAM_IGNORE);
    f.break_database();
    let mut bob = Scripted::new("bob").then(Authtok::Current, "bob's new one");
    assert_eq!(f.run(chauthtok, &mut bob, UPDATE), PAM_IGNORE);
    let mut root = Scripted::new("root").then(Authtok::Current, "root's new one");
    assert_eq!(f.run(chauthtok, &mut root, UPDATE), PAM_IGNORE);
    let mut alice = Scripted::new("alice");
    assert_eq!(f.run(chauthtok, &mut alice, UPDATE), PAM_AUTHINFO_UNAVAIL);
}

#[test]
fn session_open_refuses_a_record_whose_uid_is_not_the_accounts_now() {
    // alice's account was made again: uid 1005 now; 1000 is someone else's.
    let f = fixture();
    f.host.ports.accounts.set_uid("alice", Some(1005));
    let mut h = Scripted::new("alice");
    assert_eq!(f.run(open_session, &mut h, 0), PAM_SESSION_ERR);
    assert!(
        sent_to_systemd(&f.host.ports).is_empty(),
        "nothing was sent to any slice"
    );
    // The log says what happened and what to run.
    assert!(h.logged("the record says uid 1000"));
    assert!(h.logged("slicectl user relink alice"));
}

#[test]
fn session_open_sizes_the_slice() {
    let f = fixture();
    let mut h = Scripted::new("alice");
    assert_eq!(f.run(open_session, &mut h, 0), PAM_SUCCESS);
    let sent = sent_to_systemd(&f.host.ports);
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].starts_with("user-1000.slice CPUAccounting=yes"),
        "{sent:?}"
    );
    assert!(sent[0].contains("MemoryMax=2147483648"), "{sent:?}");
    assert!(h.logged("applied for alice: user-1000.slice"));
    assert!(h.env.is_empty(), "no variables without GPUs");

    for user in ["root", "bob"] {
        let mut h = Scripted::new(user);
        assert_eq!(f.run(open_session, &mut h, 0), PAM_IGNORE, "{user}");
    }
    assert_eq!(sent_to_systemd(&f.host.ports).len(), 1);
}

/// An OOM kill and some throttling of alice's, not yet shown.
fn record_events(f: &Fixture) {
    use libdiycloud::model::events::{EventKind, LimitEvent};
    let event = |kind, count, processes: Vec<String>| LimitEvent {
        username: "alice".into(),
        node: "n1".into(),
        first_at: Timestamp(T0),
        at: Timestamp(T0),
        kind,
        count,
        throttled_usec: 0,
        limit: Some("2G".into()),
        processes,
        shown: false,
    };
    Store::open(&f.db)
        .unwrap()
        .write(|tx| {
            tx.record_limit_events(&[
                event(EventKind::OomKill, 1, vec!["python3".into()]),
                event(EventKind::CpuThrottled, 3, Vec::new()),
            ])
        })
        .unwrap();
}

#[test]
fn session_open_tells_what_was_enforced_once() {
    let f = fixture();
    record_events(&f);
    // A silent login (PAM_SILENT), cron, and a session without a terminal
    // at all (JupyterHub's pamela) leave them for the next.
    let mut h = Scripted::new("alice");
    assert_eq!(f.run(open_session, &mut h, PAM_SILENT), PAM_SUCCESS);
    assert!(h.informed.borrow().is_empty());
    for tty in [Some("cron"), None, Some(""), Some(":0")] {
        let mut h = Scripted::new("alice");
        h.tty = tty.map(str::to_owned);
        assert_eq!(f.run(open_session, &mut h, 0), PAM_SUCCESS);
        assert!(h.informed.borrow().is_empty(), "{tty:?}");
    }

    let mut h = Scripted::new("alice");
    assert_eq!(f.run(open_session, &mut h, 0), PAM_SUCCESS);
    let informed = h.informed.borrow().clone();
    assert_eq!(informed.len(), 1, "{informed:?}");
    assert!(
        informed[0].contains("1 process was stopped for using more than 2G of memory (python3)."),
        "{informed:?}"
    );
    assert!(
        informed[0].contains("held to your CPU quota"),
        "{informed:?}"
    );

    // Not at the login after.
    let mut h = Scripted::new("alice");
    assert_eq!(f.run(open_session, &mut h, 0), PAM_SUCCESS);
    assert!(h.informed.borrow().is_empty());

    // notify_at_login = false: never.
    let f = fixture_with("[events]\nnotify_at_login = false\n");
    record_events(&f);
    let mut h = Scripted::new("alice");
    assert_eq!(f.run(open_session, &mut h, 0), PAM_SUCCESS);
    assert!(h.informed.borrow().is_empty());
    let unshown = Store::open(&f.db)
        .unwrap()
        .limit_events(Some("alice"), 10)
        .unwrap();
    assert!(unshown.iter().all(|e| !e.shown));
}

#[test]
fn session_open_follows_on_session_error() {
    let mut f = fixture();
    f.host.ports.slice.refuse_set = true;
    let mut h = Scripted::new("alice");
    assert_eq!(f.run(open_session, &mut h, 0), PAM_SESSION_ERR);
    assert!(h.told.borrow()[0].contains("could not be applied"));
    assert!(h.logged("access denied"));

    let mut f = fixture_with("[session]\non_session_error = \"allow\"\n");
    f.host.ports.slice.refuse_set = true;
    let mut h = Scripted::new("alice");
    assert_eq!(f.run(open_session, &mut h, 0), PAM_SUCCESS);
    assert!(h.logged("login allowed without limits"));
}

#[test]
fn session_open_with_a_broken_database() {
    let f = fixture();
    f.break_database();
    let mut alice = Scripted::new("alice");
    assert_eq!(f.run(open_session, &mut alice, 0), PAM_SESSION_ERR);
    let mut bob = Scripted::new("bob");
    assert_eq!(f.run(open_session, &mut bob, 0), PAM_IGNORE);
    std::fs::write(&f.config, "[unknown]\n").unwrap();
    let mut bob = Scripted::new("bob");
    assert_eq!(f.run(open_session, &mut bob, 0), PAM_IGNORE);
    let mut alice = Scripted::new("alice");
    assert_eq!(f.run(open_session, &mut alice, 0), PAM_SESSION_ERR);
}

#[test]
fn close_session_records_the_logout_at_the_hosts_time() {
    let f = fixture();
    f.host.now.set(T0 + 3600);
    let mut h = Scripted::new("alice");
    assert_eq!(f.run(close_session, &mut h, 0), PAM_SUCCESS);
    let store = Store::open(&f.db).unwrap();
    let alice = store.user("alice").unwrap().unwrap();
    assert_eq!(alice.last_logout, Some(Timestamp(T0 + 3600)));
    let mut h = Scripted::new("bob");
    assert_eq!(f.run(close_session, &mut h, 0), PAM_IGNORE);
    drop(f.dir);
}
