#!/usr/bin/env bash
# The portal's checks, run on the host against `slicectl serve` inside a
# test VM (real systemd slices, real usage), reached through a port qemu
# forwards. tests/system/vm/run.sh starts this when the guest prints
# PORTAL-READY; the guest waits until the user portal-done exists, which
# this script creates last, whatever happened before.
#
#   host-checks.sh BASE_URL ARTIFACTS_DIR
#
# Prints DIYCLOUD PASS/FAIL lines like the guest. Checks:
# - the usage history: alice's CPU seconds rise from sample to sample (the
#   server samples every second); samples older than `keep` (40 s) are gone;
# - /metrics parses with prometheus_client's parser and has a series per
#   user;
# - the pages, in headless Chromium driven by Playwright (portal.mjs).
# Needs: curl, python3 with venv, node with npm, chromium (tests/deps.sh).
set -uo pipefail
base=$1
artifacts=$2
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
cache="$root/tests/.cache"
say() { echo "DIYCLOUD $*"; }
pass() { say "PASS $1"; }
fail() { say "FAIL $1: expected $2; saw $3"; }
started=$(date +%s)
mkdir -p "$artifacts" "$cache"

login() { # USER PASSWORD -> token
    curl -sS --max-time 30 -H 'Content-Type: application/json' \
        -d "{\"username\": \"$1\", \"password\": \"$2\"}" "$base/api/v1/auth/login" |
        python3 -c 'import json, sys; print(json.load(sys.stdin).get("token", ""))'
}
token=$(login boss 'boss portal pw 1')
auth=(-H "Authorization: Bearer $token")
finish() {
    # The guest waits for this user: create it whatever happened.
    curl -sS --max-time 30 "${auth[@]}" -H 'Content-Type: application/json' \
        -d '{"username": "portal-done", "password": "portal done pw 1", "system_account": false}' \
        "$base/api/v1/users" >/dev/null || true
}
trap finish EXIT
if [ -z "$token" ]; then
    fail "the admin logs in through the forwarded port" "a token" "none"
    exit 1
fi

# --- the usage history --------------------------------------------------------
# The guest's clock, not ours: the time the server answers for `to`.
server_now() {
    curl -sS --max-time 30 "${auth[@]}" "$base/api/v1/history" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["to"])'
}
# alice's burner needs a few seconds to log in over SSH under TCG.
sleep 12
now=$(server_now)
# Two minutes: one-second buckets, one sample each.
history=$(curl -sS --max-time 30 "${auth[@]}" "$base/api/v1/users/alice/history?from=$(( now - 120 ))&to=$now")
verdict=$(echo "$history" | python3 -c '
import json, sys
cpu = [p["cpu_seconds"] for p in json.load(sys.stdin)["points"] if p["cpu_seconds"] is not None]
steps = list(zip(cpu, cpu[1:]))
rising = sum(b > a for a, b in steps) >= 3 and all(b >= a for a, b in steps)
print("rising" if rising else "not rising: %s" % cpu)')
if [ "$verdict" = rising ]; then
    pass "alice's history: her CPU seconds rise from sample to sample"
else
    fail "alice's history" "CPU seconds never falling and rising at least 3 times" "$verdict"
fi

# --- /metrics -----------------------------------------------------------------
venv="$cache/metrics-venv"
if ! "$venv/bin/python" -c 'import prometheus_client' >/dev/null 2>&1; then
    python3 -m venv "$venv" && "$venv/bin/pip" install --quiet --disable-pip-version-check 'prometheus_client>=0.20,<1'
fi
curl -sS --max-time 30 "${auth[@]}" "$base/metrics" -o "$artifacts/metrics.txt"
verdict=$("$venv/bin/python" - "$artifacts/metrics.txt" <<'PY'
import sys
from prometheus_client.parser import text_string_to_metric_families
families = {f.name: f for f in text_string_to_metric_families(open(sys.argv[1]).read())}
users = {s.labels["user"] for s in families["diycloud_user_info"].samples}
cpu = {s.labels["user"]: s.value for s in families["diycloud_user_cpu_seconds"].samples}
memory = {s.labels["user"] for s in families["diycloud_user_memory_bytes"].samples}
logins = {s.labels["result"]: s.value for s in families["diycloud_logins"].samples if s.name.endswith("_total")}
problems = []
if not {"alice", "boss"} <= users: problems.append("users %s" % sorted(users))
if cpu.get("alice", 0) <= 0: problems.append("alice cpu %s" % cpu)
if "alice" not in memory: problems.append("alice memory missing")
if logins.get("success", 0) < 1: problems.append("logins %s" % logins)
print("ok" if not problems else "; ".join(problems))
PY
)
if [ "$verdict" = ok ]; then
    pass "/metrics parses with prometheus_client and has a series per user, alice's usage and the logins"
else
    fail "/metrics" "parsed, with users, alice's CPU and memory, logins" "$verdict"
fi

# --- the pages, in a real browser -----------------------------------------------
node_dir="$cache/portal-node"
if [ ! -e "$node_dir/node_modules/playwright-core" ]; then
    mkdir -p "$node_dir"
    (cd "$node_dir" && npm install --silent --no-audit --no-fund 'playwright-core@1' >/dev/null 2>&1)
fi
NODE_PATH="$node_dir/node_modules" node "$here/portal.mjs" "$base" "$artifacts" "$token" 2>&1 |
    grep -a '^DIYCLOUD ' || fail "the browser test" "it runs" "no result (see $artifacts)"

# --- retention: nothing older than `keep` (40 s) ----------------------------------
# Wait until the server has sampled for well over `keep` (without
# retention, the oldest sample would then be 60 s old or more).
while [ $(( $(date +%s) - started )) -lt 60 ]; do sleep 2; done
# Every sample ever taken lies in the last 300 s: one-second buckets.
now=$(server_now)
oldest=$(curl -sS --max-time 30 "${auth[@]}" "$base/api/v1/history?from=$(( now - 300 ))&to=$now" |
    python3 -c 'import json, sys; p = json.load(sys.stdin)["points"]; print(min(x["at"] for x in p) if p else "none")')
# keep, plus a sampling interval and a few seconds' slack under TCG.
if [ "$oldest" != none ] && [ "$oldest" -ge $(( now - 45 )) ]; then
    pass "retention: no sample older than keep (40 s) is left (the oldest is $(( now - oldest )) s old)"
else
    fail "retention" "the oldest sample at most 45 s old" "$oldest (the server's now: $now)"
fi
