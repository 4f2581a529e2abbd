//! The API and PAM share one lockout (issue 10, acceptance 2): `slicectl
//! serve` runs as its own process on a unix socket, the PAM module runs in
//! pamtester under pam_wrapper, both on one database. Wrong passwords
//! through either lock the account for the other, and `slicectl user
//! unlock` clears it for both.
#![deny(unsafe_code)]
// Test code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use diycloud_tests::api_process::ApiProcess as Api;

#[test]
fn wrong_passwords_through_either_lock_both_and_unlock_clears_both() {
    let env = diycloud_tests::test_env!(
        "[password]\nmemory_kib = 1024\niterations = 1\n[lockout]\ndeny = 3\n[api]\nlogin_rate = 100\n"
    );
    env.standard_service();
    env.add_user("alice", "alice password 1", &[]);
    let api = Api::start(&env);
    assert_eq!(api.login("alice", "alice password 1"), 200);

    // Through the API, then PAM: her right password is refused by both.
    for _ in 0..3 {
        assert_eq!(api.login("alice", "wrong"), 401);
    }
    let pam = env.login("alice", "alice password 1");
    assert!(
        !pam.success,
        "locked through the API, PAM let her in: {pam:?}"
    );
    assert_eq!(api.login("alice", "alice password 1"), 401);
    let out = env.slicectl(&["user", "unlock", "alice"], None);
    assert!(out.status.success());
    let pam = env.login("alice", "alice password 1");
    assert!(pam.success, "{pam:?}");
    assert_eq!(api.login("alice", "alice password 1"), 200);

    // Through PAM, then the API.
    for _ in 0..3 {
        assert!(!env.login("alice", "wrong").success);
    }
    assert_eq!(api.login("alice", "alice password 1"), 401);
    assert!(!env.login("alice", "alice password 1").success);
    assert!(env
        .slicectl(&["user", "unlock", "alice"], None)
        .status
        .success());
    assert_eq!(api.login("alice", "alice password 1"), 200);
    assert!(env.login("alice", "alice password 1").success);
    api.stop();
}
