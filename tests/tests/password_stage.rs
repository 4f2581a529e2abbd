//! The `password` stage through real libpam, as `passwd` runs it: the
//! `pam_passwd` helper (pam_start_confdir, answers from stdin) as a user
//! running the setuid passwd (real uid nobody, effective uid root), and as
//! root. pam_wrapper cannot do this: the loader ignores LD_PRELOAD once
//! the real and effective uids differ.
#![deny(unsafe_code)]
// Test code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Output;

use libdiycloud::config::Config;
use libdiycloud::hashing::Hasher;
use libdiycloud::model::{Allocation, Timestamp, Username};
use libdiycloud::store::{NewUser, Store};

const CONFIG: &str = "[password]\nmemory_kib = 1024\niterations = 1\n";

struct World {
    dir: tempfile::TempDir,
    db: PathBuf,
    config: Config,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("diycloud.db");
    let config_path = dir.path().join("diycloud.toml");
    std::fs::write(&config_path, CONFIG).unwrap();
    let config = Config::parse(CONFIG).unwrap();
    let hash = Hasher::new(config.hash)
        .unwrap()
        .hash("correct horse")
        .unwrap();
    let (mut store, _) = Store::init(&db).unwrap();
    store
        .write(|tx| {
            tx.insert_user(
                &NewUser::new(
                    Username::parse("alice").unwrap(),
                    hash,
                    Allocation::default(),
                ),
                Timestamp(1),
            )
        })
        .unwrap();
    let module = diycloud_tests::module();
    let line = format!(
        "{} db={} config={}",
        module.display(),
        db.display(),
        config_path.display()
    );
    std::fs::write(
        dir.path().join("passwd"),
        format!("password [success=done ignore=ignore default=die] {line}\npassword required pam_permit.so\n"),
    )
    .unwrap();
    World { dir, db, config }
}

impl World {
    fn passwd(&self, user: &str, as_user: bool, input: &str) -> (i32, String) {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pam_passwd"));
        cmd.arg(self.dir.path()).arg("passwd").arg(user);
        if as_user {
            cmd.arg("--as-user");
        }
        let out: Output = diycloud_tests::run(cmd, Some(input.as_bytes()));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.code().unwrap_or(-1), text)
    }

    fn password_is(&self, password: &str) -> bool {
        let store = Store::open(&self.db).unwrap();
        let (_, hash) = store.credentials("alice").unwrap().unwrap();
        Hasher::new(self.config.hash)
            .unwrap()
            .verify(password.as_bytes(), &hash)
            .unwrap()
    }
}

#[test]
fn a_user_changes_their_password_with_the_old_one() {
    let w = world();
    let (rc, said) = w.passwd(
        "alice",
        true,
        "correct horse\nbattery staple\nbattery staple\n",
    );
    assert_eq!(rc, 0, "{said}");
    assert!(
        said.contains("Current password") || said.contains("assword"),
        "{said}"
    );
    assert!(w.password_is("battery staple"));

    // Wrong current password, mismatched retype, too short: nothing changes.
    for input in [
        "nope\nanother one 1\nanother one 1\n",
        "battery staple\nanother one 1\nanother one 2\n",
        "battery staple\nshort\nshort\n",
    ] {
        let (rc, said) = w.passwd("alice", true, input);
        assert_ne!(rc, 0, "{input:?}: {said}");
    }
    let (_, said) = w.passwd("alice", true, "battery staple\nshort\nshort\n");
    assert!(said.contains("shorter than 8"), "{said}");
    assert!(w.password_is("battery staple"));
}

#[test]
fn root_sets_a_password_without_the_old_one_as_pam_unix_does() {
    if diycloud_tests::skip_unless_root("setting a password as root") {
        return;
    }
    let w = world();
    let (rc, said) = w.passwd("alice", false, "set by root 1\nset by root 1\n");
    assert_eq!(rc, 0, "{said}");
    assert!(
        !said.contains("Current"),
        "root is not asked the old password: {said}"
    );
    assert!(w.password_is("set by root 1"));
    let store = Store::open(&w.db).unwrap();
    let log = store.audit_log("alice", 5).unwrap();
    assert!(
        log.iter()
            .any(|e| e.action == "user.passwd" && e.detail["by"] == "root"),
        "{log:?}"
    );
}

#[test]
fn for_users_not_ours_the_new_password_is_asked_and_passed_on() {
    // pam_unix comes after us with use_authtok (pam-auth-update's stack):
    // it needs the new password from us. Typed twice; a mismatch stops.
    let w = world();
    let (rc, said) = w.passwd("bob", true, "new pass 12\nnew pass 12\n");
    assert_eq!(rc, 0, "{said}");
    assert!(said.contains("New password"), "{said}");
    let (rc, said) = w.passwd("bob", true, "new pass 12\nother pass 12\n");
    assert_ne!(rc, 0, "{said}");
    // Root's own password too.
    let (rc, said) = w.passwd("root", true, "new pass 12\nnew pass 12\n");
    assert_eq!(rc, 0, "{said}");
}
