use super::*;
use crate::hashing::HashParams;
use crate::model::{Allocation, Date};
use crate::store::{NewUser, UserChanges};

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    config: Config,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::init(&dir.path().join("db")).unwrap();
    let config = Config {
        hash: HashParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
        lockout: LockoutPolicy {
            deny: 3,
            fail_interval: 900,
            unlock_time: 600,
        },
        ..Config::default()
    };
    let hash = Hasher::new(config.hash)
        .unwrap()
        .hash("right password")
        .unwrap();
    store
        .write(|tx| {
            tx.insert_user(
                &NewUser::new(
                    Username::parse("alice").unwrap(),
                    hash,
                    Allocation::default(),
                ),
                Timestamp(0),
            )
        })
        .unwrap();
    Fixture {
        _dir: dir,
        store,
        config,
    }
}

impl Fixture {
    fn login(&mut self, name: &str, pw: &str, at: i64) -> LoginOutcome {
        Authenticator::new(&mut self.store, &self.config, "test")
            .unwrap()
            .login(name, pw.as_bytes(), Timestamp(at))
            .unwrap()
    }

    fn modify(&mut self, changes: UserChanges) {
        self.store
            .write(|tx| tx.update_user("alice", &changes, Timestamp(1)))
            .unwrap();
    }
}

#[test]
fn right_wrong_and_unknown() {
    let mut f = fixture();
    assert!(matches!(
        f.login("alice", "right password", 10),
        LoginOutcome::Success(_)
    ));
    assert_eq!(
        f.store.user("alice").unwrap().unwrap().last_login,
        Some(Timestamp(10))
    );
    assert_eq!(
        f.login("alice", "wrong", 11),
        LoginOutcome::WrongPassword {
            failures: 1,
            locked_now: false
        }
    );
    assert_eq!(
        f.login("bob", "right password", 12),
        LoginOutcome::UnknownUser
    );
    assert_eq!(
        f.login("../x", "right password", 12),
        LoginOutcome::UnknownUser
    );
    assert_eq!(
        f.login("alice", "", 13),
        LoginOutcome::WrongPassword {
            failures: 2,
            locked_now: false
        }
    );
}

#[test]
fn lockout_refuses_the_right_password_until_it_expires() {
    let mut f = fixture();
    f.login("alice", "wrong", 100);
    f.login("alice", "wrong", 101);
    assert_eq!(
        f.login("alice", "wrong", 102),
        LoginOutcome::WrongPassword {
            failures: 3,
            locked_now: true
        }
    );
    assert_eq!(
        f.login("alice", "right password", 103),
        LoginOutcome::Locked
    );
    assert_eq!(
        f.login("alice", "right password", 701),
        LoginOutcome::Locked
    );
    assert!(matches!(
        f.login("alice", "right password", 702),
        LoginOutcome::Success(_)
    ));
    let log = f.store.audit_log("alice", 10).unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].action, "user.lock");
}

#[test]
fn success_resets_the_count() {
    let mut f = fixture();
    f.login("alice", "wrong", 100);
    f.login("alice", "wrong", 101);
    assert!(matches!(
        f.login("alice", "right password", 102),
        LoginOutcome::Success(_)
    ));
    assert_eq!(
        f.login("alice", "wrong", 103),
        LoginOutcome::WrongPassword {
            failures: 1,
            locked_now: false
        }
    );
}

#[test]
fn disabled_and_expired_accounts() {
    let mut f = fixture();
    let auth_status = |f: &mut Fixture, at: i64| {
        Authenticator::new(&mut f.store, &f.config, "t")
            .unwrap()
            .account_state("alice", Timestamp(at))
            .unwrap()
    };
    assert_eq!(auth_status(&mut f, 0), Some(AccountState::Active));
    let expiry: Date = "1970-01-02".parse().unwrap();
    f.modify(UserChanges {
        expires: Some(Some(expiry)),
        ..Default::default()
    });
    assert_eq!(auth_status(&mut f, 86_399), Some(AccountState::Active));
    assert_eq!(auth_status(&mut f, 86_400), Some(AccountState::Expired));
    f.modify(UserChanges {
        active: Some(false),
        ..Default::default()
    });
    assert_eq!(auth_status(&mut f, 0), Some(AccountState::Disabled));
    assert_eq!(
        f.login("alice", "right password", 5),
        LoginOutcome::Inactive
    );
    let status = Authenticator::new(&mut f.store, &f.config, "t")
        .unwrap()
        .account_state("nobody-here", Timestamp(0));
    assert_eq!(status.unwrap(), None);
}

#[test]
fn password_change() {
    let mut f = fixture();
    let mut auth = Authenticator::new(&mut f.store, &f.config, "pam:passwd").unwrap();
    let now = Timestamp(50);
    assert!(matches!(
        auth.change_password("alice", b"wrong", b"new password 1", now)
            .unwrap(),
        PasswordChange::Denied(LoginOutcome::WrongPassword { .. })
    ));
    assert_eq!(
        auth.change_password("alice", b"right password", b"short", now)
            .unwrap(),
        PasswordChange::Refused(PolicyViolation::TooShort(8))
    );
    assert_eq!(
        auth.change_password("alice", b"right password", b"right password", now)
            .unwrap(),
        PasswordChange::Refused(PolicyViolation::Unchanged)
    );
    assert_eq!(
        auth.change_password("alice", b"right password", b"new password 1", now)
            .unwrap(),
        PasswordChange::Changed
    );
    assert!(matches!(
        f.login("alice", "new password 1", 60),
        LoginOutcome::Success(_)
    ));
    assert!(matches!(
        f.login("alice", "right password", 61),
        LoginOutcome::WrongPassword { .. }
    ));
    let log = f.store.audit_log("alice", 10).unwrap();
    assert_eq!(
        (log[0].action.as_str(), log[0].actor.as_str()),
        ("user.passwd", "pam:passwd")
    );
}

#[test]
// Compares the time two checks take: the clock is what it measures.
#[allow(clippy::disallowed_methods)]
fn an_unknown_user_costs_as_much_as_a_wrong_password() {
    let mut f = fixture();
    f.config.hash = HashParams::default();
    let hash = Hasher::new(f.config.hash)
        .unwrap()
        .hash("right password")
        .unwrap();
    f.store
        .write(|tx| tx.set_password_hash("alice", &hash, Timestamp(0)))
        .unwrap();
    f.config.lockout.deny = 0;
    // Interleaved pairs, so load from other tests hits both sides alike.
    let mut ratios: Vec<f64> = (0..11)
        .map(|_| {
            let start = std::time::Instant::now();
            f.login("alice", "wrong", 1);
            let known = start.elapsed().as_secs_f64();
            let start = std::time::Instant::now();
            f.login("mallory", "wrong", 1);
            start.elapsed().as_secs_f64() / known
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    let ratio = ratios[ratios.len() / 2];
    assert!(
        (0.7..1.3).contains(&ratio),
        "unknown/known time, median of pairs: {ratio:.2} ({ratios:.2?})"
    );
}

impl Fixture {
    fn open_session(&mut self, pw: &str, at: i64) -> Result<ApiSession, Refusal> {
        Authenticator::new(&mut self.store, &self.config, "api")
            .unwrap()
            .open_api_session("alice", pw.as_bytes(), Timestamp(at), 3600)
            .unwrap()
    }

    fn holder(&self, token: &str, at: i64) -> Option<String> {
        session_user(&self.store, &self.config.lockout, token, Timestamp(at))
            .unwrap()
            .map(|u| u.username.to_string())
    }
}

#[test]
fn api_sessions_open_expire_and_close() {
    let mut f = fixture();
    let session = f.open_session("right password", 100).unwrap();
    assert_eq!(session.token.len(), 64);
    assert_eq!(session.expires, Timestamp(3700));
    assert_eq!(f.holder(&session.token, 101).as_deref(), Some("alice"));
    assert_eq!(f.holder(&session.token, 3700), None, "expired");
    // Another session is another token; a forged one is no one.
    let other = f.open_session("right password", 102).unwrap();
    assert_ne!(*other.token, *session.token);
    let mut forged = session.token.to_string();
    forged.replace_range(0..1, if forged.starts_with('0') { "1" } else { "0" });
    for bad in [
        forged.as_str(),
        "",
        "x",
        &"g".repeat(64),
        &session.token[..63],
    ] {
        assert_eq!(f.holder(bad, 101), None, "{bad}");
    }
    assert!(close_api_session(&mut f.store, &session.token, "api", Timestamp(103)).unwrap());
    assert_eq!(f.holder(&session.token, 104), None, "logged out");
    assert!(!close_api_session(&mut f.store, &session.token, "api", Timestamp(105)).unwrap());
    assert_eq!(f.holder(&other.token, 104).as_deref(), Some("alice"));
}

#[test]
fn api_sessions_end_with_a_password_change_a_disable_a_lock_and_a_delete() {
    let mut f = fixture();
    // Wrong passwords through the API count like any other (deny = 3).
    for at in 1..=2 {
        assert!(matches!(
            f.open_session("wrong", at),
            Err(Refusal {
                outcome: LoginOutcome::WrongPassword { .. },
                password_matched: false
            })
        ));
    }
    let token = f.open_session("right password", 10).unwrap().token;
    assert_eq!(f.holder(&token, 11).as_deref(), Some("alice"));
    f.modify(UserChanges {
        active: Some(false),
        ..UserChanges::default()
    });
    assert_eq!(f.holder(&token, 12), None, "disabled");
    f.modify(UserChanges {
        active: Some(true),
        ..UserChanges::default()
    });
    assert_eq!(f.holder(&token, 13), None, "revoked, not just hidden");

    let token = f.open_session("right password", 20).unwrap().token;
    Authenticator::new(&mut f.store, &f.config, "api")
        .unwrap()
        .set_password(
            "alice",
            b"another good password 1",
            Timestamp(21),
            SetBy::Admin,
        )
        .unwrap();
    assert_eq!(f.holder(&token, 22), None, "password changed");

    let token = f.open_session("another good password 1", 30).unwrap().token;
    for at in 31..=33 {
        f.open_session("wrong", at).unwrap_err();
    }
    assert_eq!(f.holder(&token, 34), None, "locked");
    // Only the right password learns that the account is locked.
    assert_eq!(
        f.open_session("another good password 1", 35).unwrap_err(),
        Refusal {
            outcome: LoginOutcome::Locked,
            password_matched: true
        }
    );
    assert_eq!(
        f.open_session("wrong", 36).unwrap_err(),
        Refusal {
            outcome: LoginOutcome::Locked,
            password_matched: false
        }
    );
    // Counted for /metrics: 3 sessions opened; 5 wrong passwords, one of
    // which locked the account (the attempts while locked count nowhere).
    assert_eq!(f.store.counter(Counter::LoginSuccess).unwrap(), 3);
    assert_eq!(f.store.counter(Counter::LoginFailure).unwrap(), 5);
    assert_eq!(f.store.counter(Counter::Lockout).unwrap(), 1);

    f.store.write(|tx| tx.delete_user("alice")).unwrap();
    assert_eq!(f.holder(&token, 10_000), None, "deleted");
}

#[test]
fn an_expired_account_gets_no_api_session() {
    let mut f = fixture();
    f.modify(UserChanges {
        expires: Some(Some("1970-01-02".parse::<Date>().unwrap())),
        ..UserChanges::default()
    });
    assert_eq!(
        f.open_session("right password", 200_000).unwrap_err(),
        Refusal {
            outcome: LoginOutcome::Inactive,
            password_matched: true
        }
    );
}
