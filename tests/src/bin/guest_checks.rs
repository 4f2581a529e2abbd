//! The system tier's checks, inside a test VM, as root (started by
//! tests/system/vm/guest-checks.sh once it has set the guest up). See
//! `diycloud_tests::guest` for what a check is and how it reports.
//!
//! Usage: guest_checks STAGE_DIR
//! Prints `DIYCLOUD ...` lines, one section after the other, each with its
//! time, and `DIYCLOUD DONE failures=N` at the end.
#![deny(unsafe_code)]
// The sections time themselves and wait on conditions: the clock and
// sleeping are their job.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::time::Instant;

use diycloud_tests::guest::{
    enforce, events, gpu, jupyterhub, login, packages, portal, profile, quota, share, Cmd, Guest,
};

/// One section: its number (the order it runs in), what it checks, and
/// whether this boot runs it.
struct Section {
    title: &'static str,
    runs: fn(&Guest) -> bool,
    checks: fn(&Guest),
}

fn always(_: &Guest) -> bool {
    true
}

const SECTIONS: &[Section] = &[
    Section {
        title: "the packages on a clean guest",
        runs: |g| g.marked("diycloud-new.deb") && g.v2() && !g.marked("only-jupyterhub"),
        checks: packages::run,
    },
    Section {
        title: "doctor on the installed module and stack",
        runs: always,
        checks: login::installed,
    },
    Section {
        title: "a real SSH login lands in a sized slice",
        runs: full,
        checks: login::login,
    },
    Section {
        title: "an OOM kill as a limit event",
        runs: full,
        checks: events::run,
    },
    Section {
        title: "the CPU quota and TasksMax enforced",
        runs: full,
        checks: login::enforced,
    },
    Section {
        title: "live changes, usage, nothing left by a session open",
        runs: full,
        checks: login::live,
    },
    Section {
        title: "the web portal, driven from the host",
        runs: |g| full(g) && g.marked("portal-browser"),
        checks: portal::portal,
    },
    Section {
        title: "systemd's bus unreachable",
        runs: full,
        checks: portal::no_bus,
    },
    Section {
        title: "disk quotas on ext4 and XFS",
        runs: full,
        checks: quota::run,
    },
    Section {
        title: "GPU access",
        runs: full,
        checks: gpu::run,
    },
    Section {
        title: "doctor --enforcement",
        runs: full,
        checks: enforce::run,
    },
    Section {
        title: "fair share: weights and the soft memory limit",
        runs: full,
        checks: |g| {
            share::weights(g);
            share::soft_memory(g);
        },
    },
    Section {
        title: "JupyterHub",
        runs: |g| g.marked("jupyterhub-boot"),
        checks: jupyterhub::run,
    },
    Section {
        title: "the pam-auth-update profile",
        runs: |g| full(g) && g.v2(),
        checks: profile::run,
    },
];

/// Every section runs but in the boot DIYCLOUD_VM_ONLY=jupyterhub marks.
fn full(g: &Guest) -> bool {
    !g.marked("only-jupyterhub")
}

fn main() {
    let Some(stage) = std::env::args().nth(1) else {
        eprintln!("usage: guest_checks STAGE_DIR");
        std::process::exit(2);
    };
    let g = Guest::new(Path::new(&stage));
    let version = Cmd::new(&["systemctl", "--version"]).run().stdout;
    let kernel = Cmd::new(&["uname", "-r"]).run().trimmed();
    g.info(&format!(
        "systemd {}, kernel {kernel}, {}",
        version.split_whitespace().nth(1).unwrap_or("unknown"),
        g.hierarchy.describe()
    ));
    let started = Instant::now();
    for (number, section) in (1..).zip(SECTIONS) {
        if !(section.runs)(&g) {
            g.info(&format!(
                "section {number} ({}) does not run on this boot",
                section.title
            ));
            continue;
        }
        let at = Instant::now();
        g.info(&format!(
            "{}s: section {number} begins: {}",
            started.elapsed().as_secs(),
            section.title
        ));
        (section.checks)(&g);
        g.info(&format!(
            "section {number} took {} s",
            at.elapsed().as_secs()
        ));
    }
    g.info(&format!("{}s: done", started.elapsed().as_secs()));
    g.say(&format!("DONE failures={}", g.failures()));
}
