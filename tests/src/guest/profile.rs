//! Section 14: the shipped pam-auth-update profile, as pam-auth-update
//! writes it. Back to the stock common-* files (saved by the setup), then
//! the Debian way: the profile in /usr/share/pam-configs and
//! pam-auth-update. Real sshd, su, passwd and chpasswd, for a diycloud user
//! (carol), a plain local user (dave) and a local user with a Unix password
//! who is also linked in diycloud (erin). Checked on the cgroup v2 guests
//! only (the profile does not depend on cgroups), which keeps the tier's
//! time down.

use std::path::Path;

use super::pty::{asks_no_current, chpasswd, passwd_dialog, ssh_as, ssh_refused, ssh_works, su_as};
use super::{Cmd, Guest};
use crate::pam_client::{Pam, PAM_SUCCESS};

pub fn run(g: &Guest) {
    let _ = std::fs::remove_file("/etc/diycloud/diycloud.toml");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if mountinfo.contains(" /run/dbus/system_bus_socket ") {
        Cmd::new(&["umount", "/run/dbus/system_bus_socket"]).run();
    }
    Cmd::shell("cp -a /root/pam.d.orig/common-* /etc/pam.d/").run();
    Cmd::new(&["install", "-m", "0644", &g.staged("pam-configs-diycloud")])
        .arg("/usr/share/pam-configs/diycloud")
        .run();
    let out = Cmd::new(&["pam-auth-update", "--enable", "diycloud"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .merged()
        .run();
    g.check(
        "pam-auth-update --enable diycloud",
        "0",
        &out.rc.to_string(),
    );
    for line in out.stdout.lines() {
        g.info(&format!("pam-auth-update: {line}"));
    }
    let mut all_four = true;
    for kind in ["auth", "account", "password", "session"] {
        let text = std::fs::read_to_string(format!("/etc/pam.d/common-{kind}")).unwrap_or_default();
        for line in text.lines().map(str::trim_start) {
            if !line.is_empty() && !line.starts_with('#') {
                let words: Vec<&str> = line.split_whitespace().collect();
                g.info(&format!("common-{kind}: {}", words.join(" ")));
            }
        }
        all_four &= text
            .lines()
            .any(|l| l.starts_with(kind) && l.contains("pam_diycloud"));
    }
    g.check_that(
        "pam-auth-update wrote pam_diycloud into common-auth, -account, -password and -session",
        all_four,
        "pam_diycloud in all four common-* files",
        &Cmd::shell("grep -l pam_diycloud /etc/pam.d/common-*")
            .run()
            .stdout,
    );
    let doctor = g.slicectl(&["doctor"]).stdout;
    g.check_that(
        "doctor accepts the stack pam-auth-update wrote",
        doctor.lines().any(|l| l.starts_with("ok    pam")),
        "ok    pam ...",
        &doctor
            .lines()
            .filter(|l| l.to_lowercase().contains("pam"))
            .collect::<Vec<_>>()
            .join(" "),
    );

    // OpenSSH 9.8+ (trixie's 10.0) penalises a source address that fails
    // logins (PerSourcePenalties authfail:5s, blocked past min:15s) by
    // resetting its next connections before any PAM call. Every login here
    // comes from 127.0.0.1 and this section fails a dozen on purpose: exempt
    // loopback, so each refusal seen below is PAM's. (bookworm's 9.2 has no
    // penalties and no such option.)
    let sshd = Cmd::new(&["sshd", "-T"]).run().stdout;
    if sshd.lines().any(|l| l.starts_with("persourcepenalties ")) {
        super::write(
            "/etc/ssh/sshd_config.d/diycloud-tests-penalties.conf",
            "PerSourcePenaltyExemptList 127.0.0.1,::1\n",
        );
        Cmd::new(&["systemctl", "restart", "ssh"]).run();
        let sshd = Cmd::new(&["sshd", "-T"]).merged().run().stdout;
        g.info(&format!(
            "sshd: {}",
            sshd.lines()
                .filter(|l| l.to_lowercase().starts_with("persourcepenalt"))
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }

    users(g);
    logins(g);
    erin(g);
    database_gone(g);
}

fn users(g: &Guest) {
    // carol: a diycloud user with her own system account (no Unix password).
    let out = g.slicectl_input(
        &["user", "add", "carol", "--password-stdin"],
        "carol pw 12345",
    );
    g.check("slicectl user add carol", "0", &out.rc.to_string());
    // dave: a plain local user, not in diycloud; this chpasswd already runs
    // through the new password stack (pam_diycloud first, then pam_unix with
    // use_authtok).
    Cmd::new(&["useradd", "-m", "-s", "/bin/bash", "dave"]).run();
    g.check(
        "chpasswd sets a non-diycloud user's Unix password through the profile",
        "0:",
        &chpasswd("dave:dave unix pw 1"),
    );
    // erin: a local user with a Unix password, then linked in diycloud.
    Cmd::new(&["useradd", "-m", "-s", "/bin/bash", "erin"]).run();
    g.check(
        "chpasswd erin's Unix password",
        "0",
        chpasswd("erin:erin unix pw 1")
            .split(':')
            .next()
            .unwrap_or(""),
    );
    let out = g.slicectl_input(
        &[
            "user",
            "add",
            "erin",
            "--password-stdin",
            "--no-system-account",
        ],
        "erin diycloud pw 1",
    );
    g.check(
        "slicectl user add erin --no-system-account links the local account",
        "0",
        &out.rc.to_string(),
    );
}

fn logins(g: &Guest) {
    ssh_works(
        g,
        "profile: ssh as carol with her diycloud password",
        "carol",
        "carol pw 12345",
    );
    ssh_refused(
        g,
        "profile: ssh as carol with a wrong password is refused",
        "carol",
        "not carols password",
    );
    ssh_works(
        g,
        "profile: ssh as dave (not in diycloud) with his Unix password",
        "dave",
        "dave unix pw 1",
    );
    ssh_works(
        g,
        "profile: ssh as root with root's Unix password",
        "root",
        "root test password",
    );

    // su between users, each typing the target's password on a terminal.
    g.check(
        "profile: su carol from dave with carol's diycloud password",
        "rc=0 who=carol",
        &su_as("dave", "carol", "carol pw 12345"),
    );
    g.check(
        "profile: su dave from carol with dave's Unix password",
        "rc=0 who=dave",
        &su_as("carol", "dave", "dave unix pw 1"),
    );

    // passwd as the user: current, new, new.
    passwd_dialog(
        g,
        "profile: dave changes his own Unix password with passwd",
        "runuser -u dave -- passwd",
        &["dave unix pw 1", "Sunflower-Dv-2048", "Sunflower-Dv-2048"],
    );
    ssh_works(
        g,
        "profile: ssh as dave with the password he set",
        "dave",
        "Sunflower-Dv-2048",
    );
    passwd_dialog(
        g,
        "profile: carol changes her diycloud password with passwd",
        "runuser -u carol -- passwd",
        &[
            "carol pw 12345",
            "Maple-tree-carol-77",
            "Maple-tree-carol-77",
        ],
    );
    ssh_works(
        g,
        "profile: ssh as carol with the password she set",
        "carol",
        "Maple-tree-carol-77",
    );
    ssh_refused(
        g,
        "profile: carol's old password no longer works",
        "carol",
        "carol pw 12345",
    );

    // passwd as root: no current password asked, for either kind of user.
    let out = passwd_dialog(
        g,
        "profile: root's passwd dave",
        "passwd dave",
        &["Ocean-Blue-dave-31", "Ocean-Blue-dave-31"],
    );
    asks_no_current(
        g,
        "profile: root's passwd dave asks no current password",
        &out,
    );
    ssh_works(
        g,
        "profile: ssh as dave with the password root set",
        "dave",
        "Ocean-Blue-dave-31",
    );
    let out = passwd_dialog(
        g,
        "profile: root's passwd carol",
        "passwd carol",
        &["Quartz-root-carol-59", "Quartz-root-carol-59"],
    );
    asks_no_current(
        g,
        "profile: root's passwd carol asks no current password",
        &out,
    );
    ssh_works(
        g,
        "profile: ssh as carol with the password root set",
        "carol",
        "Quartz-root-carol-59",
    );

    // chpasswd as root.
    g.check(
        "profile: chpasswd dave",
        "0:",
        &chpasswd("dave:Granite-chp-dave-64"),
    );
    ssh_works(
        g,
        "profile: ssh as dave with the password chpasswd set",
        "dave",
        "Granite-chp-dave-64",
    );
    g.check(
        "profile: chpasswd carol",
        "0:",
        &chpasswd("carol:Velvet-chp-carol-82"),
    );
    ssh_works(
        g,
        "profile: ssh as carol with the diycloud password chpasswd set",
        "carol",
        "Velvet-chp-carol-82",
    );
}

/// erin: linked, with a Unix password. diycloud decides for her.
fn erin(g: &Guest) {
    let unix = "erin unix pw 1";
    let ours = "erin diycloud pw 1";
    ssh_works(
        g,
        "profile: ssh as erin (linked) with her diycloud password",
        "erin",
        ours,
    );
    ssh_refused(
        g,
        "profile: erin's Unix password does not log her in",
        "erin",
        unix,
    );
    g.slicectl(&["user", "mod", "erin", "--disable"]);
    ssh_refused(
        g,
        "profile: disabled erin: ssh with her Unix password is refused",
        "erin",
        unix,
    );
    ssh_refused(
        g,
        "profile: disabled erin: ssh with her diycloud password is refused",
        "erin",
        ours,
    );
    g.check(
        "profile: disabled erin: su with her Unix password is refused",
        "rc=1 who=su: Authentication failure",
        &su_as("dave", "erin", unix),
    );
    g.slicectl(&["user", "mod", "erin", "--enable"]);
    ssh_works(
        g,
        "profile: enabled again, erin logs in with her diycloud password",
        "erin",
        ours,
    );
    let refused = (1..=5)
        .filter(|i| ssh_as(g, "erin", &format!("wrong erin password {i}")).ends_with("|rc=5"))
        .count();
    g.check(
        "profile: 5 wrong diycloud passwords for erin over ssh, each refused by PAM",
        "5",
        &refused.to_string(),
    );
    let shown = g.slicectl_json(&["user", "show", "erin", "--json"]);
    let locked = super::find_all(&shown, "locked")
        .first()
        .map_or(String::new(), |v| format!("\"locked\":{v}"));
    g.check(
        "profile: 5 wrong passwords over ssh lock erin",
        "\"locked\":true",
        &locked,
    );
    ssh_refused(
        g,
        "profile: locked erin: ssh with her Unix password is refused",
        "erin",
        unix,
    );
    ssh_refused(
        g,
        "profile: locked erin: ssh with her right diycloud password is refused",
        "erin",
        ours,
    );
    g.slicectl(&["user", "unlock", "erin"]);
    ssh_works(
        g,
        "profile: unlocked erin logs in with her diycloud password",
        "erin",
        ours,
    );
}

fn in_group(user: &str, group: &str) -> bool {
    Cmd::new(&["id", "-nG", user])
        .run()
        .stdout
        .split_whitespace()
        .any(|g| g == group)
}

/// A broken database locks out the users diycloud manages (the managed
/// group) and nobody else.
fn database_gone(g: &Guest) {
    g.check(
        "profile: linked erin is in the managed group",
        "yes",
        if in_group("erin", "diycloud") {
            "yes"
        } else {
            ""
        },
    );
    g.check(
        "profile: dave (not managed) is not",
        "no",
        if in_group("dave", "diycloud") {
            "yes"
        } else {
            "no"
        },
    );
    let db = "/var/lib/diycloud/diycloud.db";
    let away = "/var/lib/diycloud/diycloud.db.away";
    let _ = std::fs::rename(db, away);
    ssh_works(
        g,
        "database gone: dave (not managed) logs in with his Unix password",
        "dave",
        "Granite-chp-dave-64",
    );
    ssh_works(
        g,
        "database gone: root logs in",
        "root",
        "root test password",
    );
    // pam_unix accepts her Unix password; the account stage (ours) refuses
    // her, and sshd closes the connection (ssh exits 255, no retry).
    let out = ssh_as(g, "erin", "erin unix pw 1");
    g.check_that(
        "database gone: managed erin is refused over SSH, even with her Unix password",
        !out.contains("in as "),
        "refused",
        &out,
    );
    // Which stage refused, through real libpam and sshd's own stack: the
    // auth stage lets pam_unix's answer stand, the account stage (ours)
    // refuses because it cannot tell whether her account is enabled.
    let sshd = Pam::new("sshd", "erin", Path::new("/etc/pam.d"), "erin unix pw 1");
    let auth = sshd.login();
    let account = sshd.login_and_account();
    g.check_that(
        "database gone: managed erin passes the auth stage (pam_unix) and is refused at the account stage",
        auth == PAM_SUCCESS && account != PAM_SUCCESS,
        "pam_authenticate 0, then pam_acct_mgmt not 0",
        &format!("pam_authenticate {auth}, pam_authenticate + pam_acct_mgmt {account}"),
    );
    passwd_dialog(
        g,
        "database gone: dave still changes his Unix password with passwd",
        "runuser -u dave -- passwd",
        &["Granite-chp-dave-64", "Harbour-Dv-4096", "Harbour-Dv-4096"],
    );
    ssh_works(
        g,
        "database gone: ssh as dave with the password he set",
        "dave",
        "Harbour-Dv-4096",
    );
    let _ = std::fs::rename(away, db);
    ssh_works(
        g,
        "database back: erin logs in with her diycloud password",
        "erin",
        "erin diycloud pw 1",
    );
}
