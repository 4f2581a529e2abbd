//! Section 1: the packages on a clean guest: install, upgrade, remove,
//! purge. run.sh stages an older build's package (schema 4) and this
//! build's. Only on the cgroup v2 boots (Debian 12 and 13); it leaves the
//! guest as clean as it found it, for the sections after it.

use std::collections::BTreeSet;

use super::{doctor_lines, oneline, uid_of, Cmd, Guest, Out};

/// What `find` lists outside the places a running system writes to: after
/// the purge, nothing may be added.
fn files() -> BTreeSet<String> {
    let skipped = [
        "/tmp/*",
        "/proc/*",
        "/var/log/*",
        "/var/cache/*",
        "/var/lib/apt/*",
        "/var/lib/dpkg/*",
        "/var/lib/systemd/*",
        "/run/*",
        "/home/*",
        "/var/tmp/*",
        "/var/backups/*",
        "/root/*",
    ];
    let mut argv = vec!["find", "/", "-xdev", "-not", "("];
    for (i, path) in skipped.iter().enumerate() {
        if i > 0 {
            argv.push("-o");
        }
        argv.extend(["-path", path]);
    }
    argv.push(")");
    let out = Cmd::new(&argv).timeout(300).run();
    out.stdout.lines().map(str::to_string).collect()
}

/// `apt-get -y ARGS...`; its time goes to the log (the section's largest
/// cost under emulation).
fn apt(g: &Guest, args: &[&str]) -> Out {
    let at = std::time::Instant::now();
    let out = Cmd::new(&["apt-get", "-y"])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .merged()
        .timeout(300)
        .run();
    g.info(&format!(
        "package: apt-get {} took {} s",
        args.join(" "),
        at.elapsed().as_secs()
    ));
    out
}

/// The status, and the last lines of the output where it failed.
fn status_of(out: &Out) -> String {
    match out.rc {
        0 => "0".into(),
        rc => {
            let lines: Vec<&str> = out.stdout.lines().collect();
            let tail = lines[lines.len().saturating_sub(3)..].join("\n");
            format!("{rc} {}", oneline(&tail))
        }
    }
}

pub fn run(g: &Guest) {
    let root_pw = "root test password";
    let alice_pw = "pkg alice pw 1";
    for deb in ["diycloud-old.deb", "diycloud-new.deb"] {
        let _ = std::fs::copy(g.stage.join(deb), format!("/tmp/{deb}"));
    }
    let before = files();

    // This build on a clean guest: install, enable, a user, her login.
    let out = apt(g, &["install", "/tmp/diycloud-new.deb"]);
    g.check(
        "package: apt installs this build with no network",
        "0",
        &status_of(&out),
    );
    let doctor = g.slicectl(&["doctor"]).stdout;
    g.check(
        "package: the new install made a current database (doctor)",
        "yes",
        if doctor_lines(&doctor, "ok", "database").iter().any(|rest| {
            rest.starts_with("/var/lib/diycloud/diycloud.db: schema current, mode 600, owner root")
        }) {
            "yes"
        } else {
            "no"
        },
    );
    enable_profile();
    add_pkgalice(g, alice_pw, "200M");
    let uid = uid_of("pkgalice").unwrap_or(0);
    let slice = format!("user-{uid}.slice");
    let cg = g.ssh("pkgalice", alice_pw, "cat /proc/self/cgroup").stdout;
    g.check_that(
        "package: a fresh install logs pkgalice in over SSH into her slice",
        cg.contains(&slice),
        &slice,
        &cg,
    );
    g.check(
        "package: her slice is sized (MemoryMax 200M)",
        "209715200",
        &g.show(&slice, "MemoryMax"),
    );
    g.check(
        "package: root logs in beside it",
        "root",
        &g.ssh("root", root_pw, "id -un").trimmed(),
    );
    Cmd::new(&["loginctl", "terminate-user", "pkgalice"]).run();
    apt(g, &["purge", "diycloud"]);
    g.check(
        "package: purged again for the upgrade checks",
        "gone",
        gone(&["/var/lib/diycloud"]),
    );
    Cmd::new(&["userdel", "-r", "pkgalice"]).run();

    // An older build with a user, then this one over it.
    let out = apt(g, &["install", "/tmp/diycloud-old.deb"]);
    g.check(
        "package: apt installs the older build with no network",
        "0",
        &status_of(&out),
    );
    enable_profile();
    add_pkgalice(g, alice_pw, "300M");
    Cmd::new(&["useradd", "-m", "-s", "/bin/bash", "localdave"]).run();
    Cmd::new(&["chpasswd"])
        .input("localdave:Local-dave-pw-77\n")
        .run();
    g.check(
        "package: the older build logs pkgalice in",
        "pkgalice",
        &g.ssh("pkgalice", alice_pw, "id -un").trimmed(),
    );
    Cmd::new(&["loginctl", "terminate-user", "pkgalice"]).run();
    let out = apt(g, &["install", "/tmp/diycloud-new.deb"]);
    g.check("package: the upgrade installs", "0", &out.rc.to_string());
    let schema = std::fs::read_to_string(g.stage.join("schema-version")).unwrap_or_default();
    let schema = schema.trim();
    let migrated = out
        .stdout
        .find("migrated database")
        .is_some_and(|at| out.stdout[at..].contains(&format!("(schema version {schema})")));
    let database_lines: String = out
        .stdout
        .lines()
        .filter(|l| l.to_lowercase().contains("database"))
        .map(|l| format!("{l}|"))
        .collect();
    g.check_that(
        &format!("package: the upgrade migrated the database to schema {schema}"),
        migrated,
        &format!("migrated ... (schema version {schema})"),
        &database_lines,
    );
    let shown = g.slicectl_json(&["--json", "user", "show", "pkgalice"]);
    let memory = find_key(&shown, "memory").unwrap_or_default();
    g.check(
        "package: pkgalice is still there after the upgrade",
        "300M",
        &memory,
    );
    let uid = uid_of("pkgalice").unwrap_or(0);
    let slice = format!("user-{uid}.slice");
    let cg = g.ssh("pkgalice", alice_pw, "cat /proc/self/cgroup").stdout;
    g.check_that(
        "package: pkgalice logs in over SSH into her slice",
        cg.contains(&slice),
        &slice,
        &cg,
    );
    g.check(
        "package: her slice is sized (MemoryMax)",
        "314572800",
        &g.show(&slice, "MemoryMax"),
    );
    g.check(
        "package: root still logs in",
        "root",
        &g.ssh("root", root_pw, "id -un").trimmed(),
    );
    let page = man("slicectl", 20);
    g.check_that(
        "package: man slicectl renders",
        page.contains("Manage diycloud users"),
        "the page",
        &page,
    );
    let page = man("pam_diycloud", 8);
    g.check_that(
        "package: man pam_diycloud renders",
        page.find("pam_diycloud")
            .is_some_and(|at| page[at..].contains("PAM module")),
        "the page",
        &page,
    );
    // bash's own completion, as a person at a prompt would get it.
    let completed = Cmd::shell(
        "source /usr/share/bash-completion/completions/slicectl
        COMP_WORDS=(slicectl us); COMP_CWORD=1; COMP_LINE='slicectl us'; COMP_POINT=11
        _slicectl slicectl us slicectl; echo \"${COMPREPLY[*]}\"",
    )
    .merged()
    .run()
    .stdout;
    let mut words: Vec<&str> = completed
        .split_whitespace()
        .filter(|w| *w == "user" || *w == "usage")
        .collect();
    words.sort_unstable();
    g.check(
        "package: slicectl us<TAB> completes user and usage in bash",
        "usage|user|",
        &oneline(&words.join("\n")),
    );
    Cmd::new(&["loginctl", "terminate-user", "pkgalice"]).run();
    let out = apt(g, &["remove", "diycloud"]);
    g.check("package: apt remove", "0", &out.rc.to_string());
    let naming = Cmd::shell("grep -l pam_diycloud /etc/pam.d/*").run().stdout;
    g.check(
        "package: after remove no PAM file names pam_diycloud",
        "",
        &oneline(&naming),
    );
    g.check(
        "package: after remove root logs in",
        "root",
        &g.ssh("root", root_pw, "id -un").trimmed(),
    );
    g.check(
        "package: after remove a local user logs in",
        "localdave",
        &g.ssh("localdave", "Local-dave-pw-77", "id -un").trimmed(),
    );
    let out = apt(g, &["purge", "diycloud"]);
    g.check("package: apt purge", "0", &out.rc.to_string());
    g.check(
        "package: purge leaves no config or data",
        "gone",
        gone(&["/etc/diycloud", "/var/lib/diycloud"]),
    );
    let status = Cmd::new(&["dpkg-query", "-W", "-f=${Status}", "diycloud"])
        .run()
        .stdout;
    g.check(
        "package: dpkg knows nothing of it",
        "",
        if status.contains("not-installed") {
            ""
        } else {
            &status
        },
    );
    let accounts = ["passwd", "group", "shadow", "gshadow", "subuid", "subgid"];
    let left: Vec<String> = files()
        .difference(&before)
        .filter(|f| {
            !accounts
                .iter()
                .any(|a| f.as_str() == format!("/etc/{a}") || f.as_str() == format!("/etc/{a}-"))
        })
        .cloned()
        .collect();
    g.check(
        "package: no file of the package is left",
        "",
        &oneline(&left.join("\n")),
    );
    let group = Cmd::new(&["getent", "group", "diycloud"]).run().trimmed();
    g.info(&format!(
        "package: left by design: the diycloud group ({group}) and the accounts slicectl created (pkgalice)"
    ));
    g.check(
        "package: after purge root logs in",
        "root",
        &g.ssh("root", root_pw, "id -un").trimmed(),
    );
    Cmd::new(&["loginctl", "terminate-user", "pkgalice"]).run();
    Cmd::new(&["userdel", "-r", "pkgalice"]).run();
    Cmd::new(&["userdel", "-r", "localdave"]).run();
    Cmd::new(&["groupdel", "diycloud"]).run();
    for deb in ["diycloud-old.deb", "diycloud-new.deb"] {
        let _ = std::fs::remove_file(format!("/tmp/{deb}"));
    }
}

/// The shipped PAM profile switched on, as an admin does after install.
fn enable_profile() {
    Cmd::new(&["pam-auth-update", "--enable", "diycloud"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run();
}

/// pkgalice, half a core and `memory`, made by the installed slicectl.
fn add_pkgalice(g: &Guest, password: &str, memory: &str) {
    g.slicectl_input(
        &[
            "user",
            "add",
            "pkgalice",
            "--password-stdin",
            "--cpu",
            "0.5",
            "--memory",
            memory,
        ],
        password,
    );
}

fn gone(paths: &[&str]) -> &'static str {
    if paths.iter().any(|p| std::path::Path::new(p).exists()) {
        "left"
    } else {
        "gone"
    }
}

/// The first `lines` lines of `man PAGE` at 100 columns, joined with `|`.
fn man(page: &str, lines: usize) -> String {
    let out = Cmd::new(&["man", page])
        .env("MANWIDTH", "100")
        .merged()
        .run()
        .stdout;
    oneline(&out.lines().take(lines).collect::<Vec<_>>().join("\n"))
}

/// The first string value of `key` anywhere in `value`, depth first.
fn find_key(value: &serde_json::Value, key: &str) -> Option<String> {
    match value {
        serde_json::Value::Object(map) => map
            .get(key)
            .and_then(|v| v.as_str().map(str::to_string))
            .or_else(|| map.values().find_map(|v| find_key(v, key))),
        serde_json::Value::Array(items) => items.iter().find_map(|v| find_key(v, key)),
        _ => None,
    }
}
