//! The login use case (what the PAM module's authenticate runs), fed any
//! user name and password against a real SQLite database:
//! - it never panics and never fails (the database is sound);
//! - `Success` only for the right password of an existing, usable user;
//! - a wrong password of an existing user is `WrongPassword` (lockout is
//!   off here, so never `Locked`), a disabled user is `Inactive`;
//! - any other name, valid or not, is `UnknownUser`.
//!
//! Input: the first byte is the length of the name (cut to what is left),
//! the name follows (lossily decoded as UTF-8, as a PAM conversation may
//! hand over anything), the rest is the password.
#![deny(unsafe_code)]
#![no_main]

use std::sync::{Mutex, OnceLock};

use libdiycloud::usecases::auth::{Authenticator, LoginOutcome};
use libdiycloud::config::Config;
use libdiycloud::model::{Allocation, Pending, Timestamp, Username};
use libdiycloud::hashing::{HashParams, Hasher};
use libdiycloud::store::{NewUser, Store};
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = "[password]\nmemory_kib = 8\niterations = 1\nparallelism = 1\n\
                      [lockout]\ndeny = 0\n";

/// name, password, usable (not pending).
const USERS: &[(&str, &str, bool)] = &[
    ("alice", "correct horse", true),
    ("bob", "hunter2-é", true),
    ("carol", "pending-pw", false),
];

struct World {
    store: Store,
    config: Config,
    // Kept for the life of the process: it holds the database.
    _dir: tempfile::TempDir,
}

/// The database, made once per process (in $TMPDIR; tests/fuzz.sh points
/// that at a directory it removes afterwards).
fn world() -> &'static Mutex<World> {
    static WORLD: OnceLock<Mutex<World>> = OnceLock::new();
    WORLD.get_or_init(|| {
        let config = Config::parse(CONFIG).expect("the fuzz config parses");
        assert_eq!(config.lockout.deny, 0);
        let dir = tempfile::Builder::new()
            .prefix("diycloud-fuzz-login-")
            .tempdir()
            .expect("a temporary directory");
        let path = dir.path().join("users.db");
        let hasher = Hasher::new(HashParams {
            memory_kib: 8,
            iterations: 1,
            parallelism: 1,
        })
        .expect("valid cheap argon2 parameters");
        {
            let (mut store, _) = Store::init(&path).expect("Store::init");
            store
                .write(|tx| {
                    for (name, password, usable) in USERS {
                        let hash = hasher.hash(password).expect("hash");
                        let mut new = NewUser::new(
                            Username::parse(name).expect("valid name"),
                            hash,
                            Allocation::default(),
                        );
                        if !usable {
                            new.pending = Some(Pending::Add);
                        }
                        tx.insert_user(&new, Timestamp(1))?;
                    }
                    Ok::<_, libdiycloud::store::StoreError>(())
                })
                .expect("insert the users");
        }
        let store = Store::open(&path).expect("Store::open");
        Mutex::new(World {
            store,
            config,
            _dir: dir,
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&len, rest)) = data.split_first() else {
        return;
    };
    let (name, password) = rest.split_at(usize::from(len).min(rest.len()));
    let name = String::from_utf8_lossy(name);

    let mut world = world().lock().unwrap_or_else(|e| e.into_inner());
    let World { store, config, .. } = &mut *world;
    let mut auth = Authenticator::new(store, config, "fuzz").expect("Authenticator::new");
    let outcome = match auth.login(&name, password, Timestamp(1000)) {
        Ok(outcome) => outcome,
        Err(e) => panic!("login({name:?}, {password:?}) failed: {e}"),
    };
    drop(auth);

    let known = USERS.iter().find(|(n, _, _)| *n == name);
    match (known, &outcome) {
        (None, LoginOutcome::UnknownUser) => {}
        (Some((_, _, false)), LoginOutcome::Inactive) => {}
        (Some((n, pw, true)), LoginOutcome::Success(user)) => {
            assert_eq!(
                password,
                pw.as_bytes(),
                "{n} logged in with a wrong password"
            );
            assert_eq!(user.username.as_str(), *n);
            // The login is recorded (the returned record is the one read
            // before, with the previous login).
            let stored = store
                .user(n)
                .expect("read the user")
                .expect("the user exists");
            assert_eq!(stored.last_login, Some(Timestamp(1000)));
            assert_eq!(stored.failures.count, 0, "a success clears the failures");
        }
        (
            Some((n, pw, true)),
            LoginOutcome::WrongPassword {
                failures,
                locked_now,
            },
        ) => {
            assert_ne!(password, pw.as_bytes(), "{n}'s right password was refused");
            assert!(*failures >= 1);
            let stored = store
                .user(n)
                .expect("read the user")
                .expect("the user exists");
            assert_eq!(stored.failures.count, *failures, "the failure is counted");
            assert!(!locked_now, "deny = 0 locks nobody");
        }
        (known, outcome) => panic!(
            "login({name:?}, {password:?}) of {:?} gave {outcome:?}",
            known.map(|(n, _, _)| n)
        ),
    }
});
