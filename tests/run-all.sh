#!/usr/bin/env bash
# Every test of diycloud: lint, the release build and its packages, the
# benchmarks, then the system tier (Debian VMs under qemu with real
# systemd, kernel and sshd) in the background while the rest runs: the fast
# tier (`cargo test`: unit tests, the real module through real libpam under
# pam_wrapper, slicectl, and system accounts when run as root), the fault
# suite, fuzzing, JupyterHub's PAMAuthenticator, the REST API under
# schemathesis and abuse, and the cluster store on a real PostgreSQL
# server. Run as root on Debian 12: tests/run-all.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# The time of each tier, printed at the end of the run (passed or not), so
# a tier that grows shows at once.
tier_log=$(mktemp)
tier_name=""
tier_start=$SECONDS
tier() {
    if [ -n "$tier_name" ]; then
        printf '%s\t%s\n' "$((SECONDS - tier_start))" "$tier_name" >>"$tier_log"
    fi
    tier_name="$1"
    tier_start=$SECONDS
    if [ -n "$1" ]; then echo "== $1"; fi
}
tier_times() {
    tier ""
    echo "== time per tier (seconds; the whole run: $SECONDS s)"
    awk -F'\t' '{ printf "   %5d  %s\n", $1, substr($2, 1, 90) }' "$tier_log"
    rm -f "$tier_log"
}
# A run from scratch writes about 15 GB (cargo's targets, the VM images and
# the guests' disks). Say so at once rather than fail at the fifth step with
# "No space left on device". Incremental compilation only pays for a tree
# that is built again; a fresh clone is built once, at about half the size.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
free_gb=$(df -Pk "$root" | awk 'NR==2 {print int($4 / 1048576)}')
echo "== disk: ${free_gb} GB free where the tests build"
if [ "$free_gb" -lt 20 ]; then
    echo "FAIL: a whole run needs about 20 GB free; $root has ${free_gb} GB"
    exit 1
fi
if [ "$(id -u)" = 0 ]; then
    tier "dependencies: tests/deps.sh, and the VM images started in the background"
    tests/deps.sh
    # The VM tier's images and older build, made meanwhile (network, dpkg
    # and a compile; nothing before the benchmarks times anything). The
    # system tier waits for them; their log: target/vm/prepare.log.
    mkdir -p target/vm
    setsid tests/system/vm/prepare.sh bookworm trixie > target/vm/prepare.log 2>&1 &
    prepare_pid=$!
fi

# Every test that skips itself (diycloud_tests::skip) appends a line here;
# the totals at the end list them, so a skip never passes for a pass.
export DIYCLOUD_SKIP_LOG
DIYCLOUD_SKIP_LOG=$(mktemp)
# On the way out, passed or not: the times, and no background work left
# running (the preparation, the system tier's guests).
trap 'tier_times || true; rm -f "$DIYCLOUD_SKIP_LOG"; for pid in "${prepare_pid:-}" "${system_pid:-}"; do if [ -n "$pid" ]; then kill -- "-$pid" 2>/dev/null || true; fi; done' EXIT
skipped_total() {
    local n
    n=$(wc -l <"$DIYCLOUD_SKIP_LOG")
    echo "== skipped tests: $n"
    if [ "$n" -gt 0 ]; then sed 's/^/   /' "$DIYCLOUD_SKIP_LOG"; fi
}

tier "lint: cargo fmt --check, cargo clippy -D warnings"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

# The release build first: the benchmarks and the system tier run on it,
# and the system tier (about 25 minutes of guests under emulation) then
# runs in the background beside every tier after the benchmarks, on the
# cores those leave idle while they wait on processes, sockets and timers.
tier "the release build, and the module exports exactly the six pam_sm_* symbols"
cargo build --release --workspace --locked
exported=$(nm -D --defined-only target/release/libpam_diycloud.so | awk '{print $3}' | sort | tr '\n' ' ')
expected="pam_sm_acct_mgmt pam_sm_authenticate pam_sm_chauthtok pam_sm_close_session pam_sm_open_session pam_sm_setcred "
if [ "$exported" != "$expected" ]; then
    echo "FAIL: exported symbols: expected [$expected], saw [$exported]"
    exit 1
fi
echo "ok: $exported"

tier "packages: the .deb and the .rpm as files (packaging/build-packages.sh, tests/system/packages-check.sh)"
tests/system/packages-check.sh

# The benchmarks time logins: the VM tier's preparation must be over.
if [ -n "${prepare_pid:-}" ]; then
    tier "waiting for the VM tier's images and older build (target/vm/prepare.log)"
    wait "$prepare_pid" || echo "   not ready: the system tier tries again"
    prepare_pid=""
fi

tier "benchmark: PAM authentication vs bare argon2 verify"
target/release/bench_auth --rounds 200

tier "benchmark: failed logins take the same time whatever the reason (target: within 5%)"
target/release/bench_timing --rounds 100

tier "benchmark: the REST API on loopback (reads: throughput, p99, CPU a read; logins against bare verifies on every core measured between them, target >= 85%)"
target/release/bench_api --seconds 5 --connections 16 --check

# The system tier, in the background from here; its report is printed
# (and its verdict taken) at the end.
system_name="system tier: Debian 12 and 13 VMs, cgroup v2 and v1 (qemu, real systemd/kernel/sshd)"
if [ "$(id -u)" = 0 ]; then
    system_log=target/vm/system-tier.log
    system_start=$SECONDS
    echo "== $system_name: started in the background (log: $system_log)"
    setsid tests/system/vm/run.sh >"$system_log" 2>&1 &
    system_pid=$!
else
    echo "SKIPPED system tier: it needs root (debootstrap, loop images)" | tee -a "$DIYCLOUD_SKIP_LOG"
fi

tier "tier 1: cargo test --workspace"
cargo test --workspace --locked

tier "fault suite: kill -9 at random points of every writing command, full disk, read-only database"
# --workspace: tier 1's features, so its build serves (-p slicectl alone
# unifies other features and compiles the tree again).
cargo test --workspace --test fault_suite --locked -- --ignored

tier "fuzzing: a short run of every target (tests/fuzz.sh --short)"
tests/fuzz.sh --short 20

tier "JupyterHub PAMAuthenticator"
cargo build --workspace --locked
tests/system/jupyterhub.sh

tier "REST API: schemathesis checks the OpenAPI document against the running server"
tests/system/api-schemathesis.sh

tier "API abuse: forged X-Forwarded-For, IPv6 /64 rotation, a login flood, 1,100 slow connections, SIGTERM (tests/system/api-abuse.sh)"
tests/system/api-abuse.sh

tier "clusters: the store on a real PostgreSQL server, two nodes through real libpam, and its benchmark (tests/system/cluster.sh)"
if [ "$(id -u)" = 0 ]; then
    tests/system/cluster.sh
else
    echo "SKIPPED clusters: the module trusts only root's config and password file" | tee -a "$DIYCLOUD_SKIP_LOG"
fi

if [ -n "${system_pid:-}" ]; then
    tier "waiting for the system tier"
    system_rc=0
    wait "$system_pid" || system_rc=$?
    system_pid=""
    printf '%s\t%s\n' "$((SECONDS - system_start))" "$system_name (in the background from second $system_start)" >>"$tier_log"
    echo "== $system_name"
    cat "$system_log"
    [ "$system_rc" = 0 ] || exit "$system_rc"
fi

skipped_total
echo "== all tests passed"
