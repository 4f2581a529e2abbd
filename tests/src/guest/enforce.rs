//! Section 11: `slicectl doctor --enforcement`, the limits proven by
//! breaking them. A canary with small limits, GPU 0 of the two mknod nodes,
//! and 8M of disk on both quota filesystems: every control proven, exit 0.
//! Its soft memory limit (96M) would slow a probe down before MemoryMax
//! kills it (cgroup v2): memory is proven at a child limit under it,
//! MemoryMax read back. Then the root ext4 (no quotas) among the quota
//! filesystems: that one named, exit 1. Nothing of the probes may be left:
//! no unit, no process, no file.

use super::gpu;
use super::{doctor_lines, pids_of, uid_of, write, Cmd, Guest};

const CONFIG: &str = "/etc/diycloud/diycloud.toml";

pub fn run(g: &Guest) {
    gpu::make_nodes(g);
    write(
        CONFIG,
        "[quota]\nfilesystems = [\"/home\", \"/srv/scratch\"]\n",
    );
    let out = g.slicectl_input(
        &[
            "user",
            "add",
            "canary",
            "--password-stdin",
            "--cpu",
            "0.5",
            "--memory",
            "128M",
            "--memory-high",
            "96M",
            "--tasks",
            "32",
            "--gpus",
            "0",
            "--disk",
            "8M",
        ],
        "canary pw 12345",
    );
    g.check(
        "slicectl user add canary (0.5 core, 128M, soft 96M, 32 tasks, GPU 0, 8M disk)",
        "0",
        &out.rc.to_string(),
    );
    let doctor = || {
        Cmd::new(&[
            super::SLICECTL,
            "doctor",
            "--enforcement",
            "--user",
            "canary",
        ])
        .merged()
        .timeout(400)
        .run()
    };
    let proofs = doctor();
    g.check(
        "doctor --enforcement exits 0 on a correct node",
        "0",
        &proofs.rc.to_string(),
    );
    for line in proofs.stdout.lines() {
        g.info(&format!("enforcement: {line}"));
    }
    for control in ["memory", "cpu", "tasks", "gpus"] {
        g.check(
            &format!("doctor --enforcement proves {control}"),
            "1",
            &doctor_lines(&proofs.stdout, "proven", control)
                .len()
                .to_string(),
        );
    }
    if g.v2() {
        g.check(
            "... memory at a child limit under the soft limit",
            "1",
            &doctor_lines(&proofs.stdout, "proven", "memory")
                .iter()
                .filter(|r| r.contains("above its soft limit 96M"))
                .count()
                .to_string(),
        );
    }
    g.check(
        "doctor --enforcement proves the disk quota on /home and /srv/scratch",
        "2",
        &doctor_lines(&proofs.stdout, "proven", "disk")
            .iter()
            .filter(|r| r.starts_with("/home:") || r.starts_with("/srv/scratch:"))
            .count()
            .to_string(),
    );
    write(
        CONFIG,
        "[quota]\nfilesystems = [\"/home\", \"/srv/scratch\", \"/\"]\n",
    );
    let broken = doctor();
    g.check(
        "with / (no quotas) configured, doctor --enforcement exits 1",
        "1",
        &broken.rc.to_string(),
    );
    for line in broken.stdout.lines().filter(|l| !l.starts_with("proven")) {
        g.info(&format!("enforcement, broken: {line}"));
    }
    let not_proven: Vec<&str> = broken
        .stdout
        .lines()
        .filter(|l| l.starts_with("NOT PROVEN"))
        .collect();
    g.check(
        "... and names / as not proven",
        "1",
        &doctor_lines(&broken.stdout, "NOT PROVEN", "disk")
            .iter()
            .filter(|r| r.starts_with("/:"))
            .count()
            .to_string(),
    );
    g.check("... and nothing else", "1", &not_proven.len().to_string());
    g.check(
        "no probe unit is left",
        "",
        &Cmd::new(&[
            "systemctl",
            "list-units",
            "--all",
            "--no-legend",
            "diycloud-probe-*",
        ])
        .merged()
        .run()
        .trimmed(),
    );
    let left = uid_of("canary").map_or_else(Vec::new, |uid| pids_of(uid, None));
    g.check(
        "no probe process is left",
        "",
        &format!("{}", PidList(&left)),
    );
    let files: Vec<String> = ["/home", "/srv/scratch", "/"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir).into_iter().flatten().flatten())
        .map(|e| e.path().display().to_string())
        .filter(|p| p.contains("/.diycloud-probe-"))
        .collect();
    g.check("no probe file is left", "", &files.join("\n"));
    let _ = std::fs::remove_file(CONFIG);
    g.slicectl(&["user", "del", "canary", "--remove-home"]);
    gpu::remove_nodes();
    let _ = std::fs::remove_file("/tmp/gpu-go");
}

/// Pids, space-separated (empty for none).
struct PidList<'a>(&'a [i32]);

impl std::fmt::Display for PidList<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list: Vec<String> = self.0.iter().map(i32::to_string).collect();
        write!(f, "{}", list.join(" "))
    }
}
