//! Who diycloud manages is told without the database (DESIGN §7): by
//! membership in the managed group. So a broken database locks out the
//! managed users (they fail closed) and nobody else: root and local
//! accounts diycloud does not manage keep logging in.
//!
//! Real libpam under pam_wrapper, with the accounts and groups of
//! nss_wrapper (alice in the group `diycloud`, bob not), so nothing on the
//! host changes and no root is needed.
#![deny(unsafe_code)]
// Test code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use diycloud_tests::{Env, Outcome};

const AUTHINFO_UNAVAIL: &str = "Authentication service cannot retrieve authentication info";

/// alice (managed: in the group, in the database) and bob (a local account
/// diycloud does not manage), with the standard stacks.
fn env() -> Env {
    let env = diycloud_tests::test_env!("");
    env.add_user("alice", "correct horse", &[]);
    std::fs::write(
        env.dir.path().join("passwd"),
        "root:x:0:0:root:/root:/bin/bash\n\
         alice:x:1000:1000::/home/alice:/bin/bash\n\
         bob:x:1001:1001::/home/bob:/bin/bash\n",
    )
    .unwrap();
    std::fs::write(
        env.dir.path().join("group"),
        "root:x:0:\nalice:x:1000:\nbob:x:1001:\ndiycloud:x:990:alice\n",
    )
    .unwrap();
    // What the shipped stacks do for an account stage of ours: required,
    // then pam_permit (pam_unix's place).
    env.service(
        "permit",
        &[
            "account required {module}",
            "account required pam_permit.so",
        ],
    );
    // Tells our IGNORE from our SUCCESS: an ignore skips pam_deny.
    env.service(
        "ignored",
        &[
            "account [success=ok ignore=1 default=bad] {module}",
            "account requisite pam_deny.so",
            "account required pam_permit.so",
        ],
    );
    env
}

fn account(env: &Env, service: &str, user: &str) -> Outcome {
    let mut cmd = env.pamtester_cmd(service, user, &["acct_mgmt"]);
    cmd.env("LD_PRELOAD", "libpam_wrapper.so libnss_wrapper.so")
        .env("NSS_WRAPPER_PASSWD", env.dir.path().join("passwd"))
        .env("NSS_WRAPPER_GROUP", env.dir.path().join("group"));
    env.pamtester_run(cmd, b"")
}

#[test]
fn with_the_database_healthy_only_database_users_are_ours() {
    let env = env();
    for user in ["alice", "bob", "root"] {
        let out = account(&env, "permit", user);
        assert!(out.success, "{user}: {out:?}");
    }
    assert!(!account(&env, "ignored", "alice").success, "ours: SUCCESS");
    assert!(account(&env, "ignored", "bob").success, "not ours: IGNORE");
    assert!(account(&env, "ignored", "root").success, "root: IGNORE");
}

#[test]
fn with_the_database_missing_managed_users_are_denied_and_others_ignored() {
    let env = env();
    std::fs::remove_file(&env.db).unwrap();
    let alice = account(&env, "permit", "alice");
    assert!(alice.failed_with(AUTHINFO_UNAVAIL), "{alice:?}");
    for user in ["bob", "root"] {
        let out = account(&env, "permit", user);
        assert!(out.success, "{user} must not be locked out: {out:?}");
        let out = account(&env, "ignored", user);
        assert!(out.success, "{user}: our answer is IGNORE: {out:?}");
    }
}

#[test]
fn with_the_config_broken_the_default_group_still_tells() {
    let env = env();
    std::fs::write(&env.config, "not = [valid").unwrap();
    assert!(account(&env, "permit", "alice").failed_with(AUTHINFO_UNAVAIL));
    assert!(account(&env, "permit", "bob").success);
}
