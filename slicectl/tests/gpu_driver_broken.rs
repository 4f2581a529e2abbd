//! A node whose NVIDIA driver is broken: `/dev/nvidia*` nodes are there but
//! `libnvidia-ml.so.1` is not (what a kernel update without the matching
//! driver leaves). `usage` reports the GPU figures as unavailable, with the
//! reason, and everything else as usual.
//!
//! For real: slicectl runs in a private mount namespace whose `/dev` holds
//! GPU nodes made with mknod (major 195, as the driver's), and NVML really
//! fails to load (this machine has no NVIDIA driver). Needs root.
#![deny(unsafe_code)]
// Test code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

use diycloud_tests::Env;

/// `slicectl ARGS` against `env` with `/dev` replaced, for it alone, by a
/// tmpfs holding the usual nodes and two GPUs' nodes.
fn with_gpu_nodes(env: &Env, args: &[&str]) -> Output {
    let script = r#"set -e
mount -t tmpfs -o mode=0755 tmpfs /dev
mknod -m 666 /dev/null c 1 3
mknod -m 666 /dev/zero c 1 5
mknod -m 666 /dev/urandom c 1 9
mknod -m 666 /dev/nvidia0 c 195 0
mknod -m 666 /dev/nvidia1 c 195 1
mknod -m 666 /dev/nvidiactl c 195 255
exec "$@""#;
    let cmd = env.slicectl_cmd(args);
    let mut outer = Command::new("unshare");
    outer
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    diycloud_tests::run(outer, None)
}

fn skip() -> bool {
    if diycloud_tests::skip_unless_root("mknod and a private mount namespace") {
        return true;
    }
    for nvml in [
        "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
        "/usr/lib64/libnvidia-ml.so.1",
        "/usr/lib/libnvidia-ml.so.1",
    ] {
        if Path::new(nvml).exists() {
            diycloud_tests::skip("an NVIDIA driver is installed: NVML would load");
            return true;
        }
    }
    false
}

#[test]
fn usage_reports_gpu_figures_unavailable_and_the_rest_as_usual() {
    if skip() {
        return;
    }
    let env = diycloud_tests::test_env!("");
    env.add_user("alice", "long enough 1", &[]);
    env.add_user("bob", "long enough 1", &[]);

    // First, that the fake nodes are seen as GPUs and NVML really fails.
    let out = with_gpu_nodes(&env, &["--json", "gpu", "list"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "gpu list: {out:?}");
    assert!(listed.contains("\"minor\": 1"), "both nodes seen: {listed}");

    let out = with_gpu_nodes(&env, &["--json", "usage", "alice"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "usage alice: {stderr}");
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let rows = rows.as_array().expect("one entry per user");
    assert_eq!(rows.len(), 1, "{rows:?}");
    let alice = &rows[0];
    assert_eq!(alice["username"], "alice");
    let why = alice["gpu_unavailable"].as_str().expect("a reason");
    assert!(why.contains("NVML"), "{why}");
    assert!(
        why.contains("libnvidia-ml.so"),
        "names what is missing: {why}"
    );
    // The rest as usual: the same document as on a node without GPUs.
    assert!(
        alice["disk"].is_array() && alice["events"].is_array(),
        "{alice}"
    );
    assert!(alice["gpus"].as_array().unwrap().is_empty(), "{alice}");
    assert!(stderr.contains("GPU figures unavailable"), "{stderr}");

    // Everyone's usage, as text: no failure either.
    let out = with_gpu_nodes(&env, &["usage"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "usage: {stderr}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("alice") && text.contains("bob"), "{text}");
    assert!(stderr.contains("libnvidia-ml.so"), "{stderr}");
}

#[test]
fn without_gpu_nodes_there_is_nothing_unavailable() {
    if skip() {
        return;
    }
    let env = diycloud_tests::test_env!("");
    env.add_user("alice", "long enough 1", &[]);
    let rows = env.slicectl_json(&["usage", "alice"]);
    // The field is always there (null: the figures were read, or there are
    // no GPUs), so a script can tell "unavailable" from an older slicectl.
    assert!(
        rows[0]
            .get("gpu_unavailable")
            .is_some_and(serde_json::Value::is_null),
        "{rows}"
    );
}
