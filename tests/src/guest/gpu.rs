//! Section 10: GPU access, with device nodes made by mknod (no NVIDIA
//! driver here). Opening a node the slice allows gives ENXIO (no driver
//! behind it); one it does not allow gives EPERM from the device cgroup.

use std::time::Duration;

use nix::sys::stat::{mknod, Mode, SFlag};

use super::login::ALICE_PW;
use super::{pids_of, uid_of, wait_for, Cmd, Guest};

const BOB_PW: &str = "bob pw 12345";

/// The nodes of two GPUs, the control node and nvidia-uvm.
pub const NODES: &[&str] = &[
    "/dev/nvidia0",
    "/dev/nvidia1",
    "/dev/nvidiactl",
    "/dev/nvidia-uvm",
];

/// A character device major that /proc/devices does not list, from 240 down:
/// nvidia-uvm's (its major is dynamic, and no NVIDIA driver is here).
fn free_major() -> u64 {
    let devices = std::fs::read_to_string("/proc/devices").unwrap_or_default();
    let used: Vec<u64> = devices
        .split("\n\n")
        .find(|block| block.starts_with("Character"))
        .unwrap_or("")
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    (1..=240).rev().find(|m| !used.contains(m)).unwrap_or(240)
}

/// Makes the four nodes (those not there yet), mode 666.
pub fn make_nodes(g: &Guest) {
    let uvm = free_major();
    for (path, major, minor) in [
        (NODES[0], 195, 0),
        (NODES[1], 195, 1),
        (NODES[2], 195, 255),
        (NODES[3], uvm, 0),
    ] {
        if std::path::Path::new(path).exists() {
            continue;
        }
        let made = mknod(
            path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(major, minor),
        )
        .map_err(|e| e.to_string())
        .and_then(|()| {
            std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o666))
                .map_err(|e| e.to_string())
        });
        if let Err(e) = made {
            g.info(&format!("mknod {path}: {e}"));
        }
    }
}

pub fn remove_nodes() {
    for node in NODES {
        let _ = std::fs::remove_file(node);
    }
}

/// What opening `device` for reading says in `user`'s SSH session.
fn open_as(g: &Guest, user: &str, password: &str, device: &str) -> String {
    g.ssh(
        user,
        password,
        &format!("cat {device} 2>&1 | sed 's/.*: //'"),
    )
    .last_line()
}

pub fn run(g: &Guest) {
    make_nodes(g);
    let out = g.slicectl_input(
        &["user", "add", "alice", "--password-stdin", "--gpus", "0"],
        ALICE_PW,
    );
    g.check("slicectl user add alice --gpus 0", "0", &out.rc.to_string());
    let out = g.slicectl_input(
        &["user", "add", "bob", "--password-stdin", "--gpus", "none"],
        BOB_PW,
    );
    g.check(
        "slicectl user add bob --gpus none",
        "0",
        &out.rc.to_string(),
    );
    let enxio = "No such device or address";
    let eperm = "Operation not permitted";
    g.check(
        "alice (--gpus 0) opens /dev/nvidia0 as far as the missing driver (ENXIO)",
        enxio,
        &open_as(g, "alice", ALICE_PW, "/dev/nvidia0"),
    );
    g.check(
        "alice is refused /dev/nvidia1 by the device cgroup (EPERM)",
        eperm,
        &open_as(g, "alice", ALICE_PW, "/dev/nvidia1"),
    );
    g.check(
        "alice opens /dev/nvidia-uvm (ENXIO)",
        enxio,
        &open_as(g, "alice", ALICE_PW, "/dev/nvidia-uvm"),
    );
    g.check(
        "bob (--gpus none) is refused /dev/nvidia0 (EPERM)",
        eperm,
        &open_as(g, "bob", BOB_PW, "/dev/nvidia0"),
    );
    g.check(
        "bob is refused /dev/nvidia1 (EPERM)",
        eperm,
        &open_as(g, "bob", BOB_PW, "/dev/nvidia1"),
    );
    let alice_slice = format!("user-{}.slice", uid_of("alice").unwrap_or(u32::MAX));
    g.check(
        "alice's slice has DevicePolicy=closed",
        "closed",
        &g.show(&alice_slice, "DevicePolicy"),
    );
    let basics = "echo x > /dev/null && head -c 1 /dev/zero > /dev/null && head -c 1 /dev/urandom > /dev/null && exec 3<> /dev/fuse && echo hi > \"$(tty)\" && echo basics-ok";
    for (who, pw) in [("alice", ALICE_PW), ("bob", BOB_PW)] {
        let out = Cmd::new(&["sshpass", "-p", pw, "ssh", "-tt"])
            .args(super::SSH_OPTIONS)
            .arg(&format!("{who}@127.0.0.1"))
            .arg(basics)
            .merged()
            .timeout(180)
            .run();
        g.check(
            &format!("{who} keeps a terminal, /dev/null, /dev/zero, /dev/urandom and /dev/fuse"),
            "basics-ok",
            &out.last_line(),
        );
    }
    g.check(
        "alice's session: CUDA_VISIBLE_DEVICES names her grant",
        "0 PCI_BUS_ID",
        &g.ssh(
            "alice",
            ALICE_PW,
            "echo $CUDA_VISIBLE_DEVICES $CUDA_DEVICE_ORDER",
        )
        .last_line(),
    );
    g.check(
        "bob's session: CUDA_VISIBLE_DEVICES set and empty",
        "[]",
        &g.ssh("bob", BOB_PW, "echo \"[${CUDA_VISIBLE_DEVICES-unset}]\"")
            .last_line(),
    );

    // A running session of alice's opens /dev/nvidia1 in a new process
    // after `user mod --gpus all`, without a new login.
    let _ = std::fs::remove_file("/tmp/gpu-go");
    let live = Guest::ssh_cmd(
        "alice",
        ALICE_PW,
        "while [ ! -e /tmp/gpu-go ]; do sleep 0.2; done; cat /dev/nvidia1 2>&1 | sed \"s/.*: //\"",
    )
    .merged()
    .start();
    // Her session runs once its loop does.
    let uid = uid_of("alice").unwrap_or(u32::MAX);
    wait_for(Duration::from_secs(120), Duration::from_millis(100), || {
        !pids_of(uid, Some("sleep")).is_empty()
    });
    let out = g.slicectl(&["user", "mod", "alice", "--gpus", "all"]);
    g.check(
        "slicectl user mod alice --gpus all",
        "0",
        &out.rc.to_string(),
    );
    super::write("/tmp/gpu-go", "");
    g.check(
        "her running session opens /dev/nvidia1 after the change (ENXIO)",
        enxio,
        &live.wait().last_line(),
    );
    let allowed = g.show(&alice_slice, "DeviceAllow").replace('\n', " ");
    g.info(&format!(
        "DeviceAllow of alice's slice: {}",
        allowed.chars().take(300).collect::<String>()
    ));
    g.no_processes_of("alice");
    g.no_processes_of("bob");
    g.slicectl(&["user", "del", "alice", "--remove-home"]);
    g.slicectl(&["user", "del", "bob", "--remove-home"]);
}
