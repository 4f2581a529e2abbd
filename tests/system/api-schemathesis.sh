#!/usr/bin/env bash
# Acceptance 4 of the REST API: schemathesis (from PyPI), an independent
# tool, checks the OpenAPI document against the running server: thousands of
# generated requests per run, every check but one, with an admin's token.
#
# - positive_data_acceptance is left out: it expects every value the JSON
#   Schema allows to be accepted, and the server's rules are finer than JSON
#   Schema states (sizes and CPU in hundredths up to a bound, calendar dates,
#   reserved names, the password policy of the config): those values get 422
#   naming the rule, which the document lists for these operations.
# - logout and the password change are left out: they end the session the
#   run uses (tests in server/tests/api.rs cover them).
# - The lockout is off for this server (`deny = 0`): the generated wrong
#   passwords would otherwise lock the admin out and hide every route
#   behind 401.
#
# The server may create system accounts (POST /users with system_account
# true), so as root it runs in a private mount namespace with a copy of /etc
# and an empty /home: useradd and userdel there leave this machine alone.
# Needs: the workspace built (target/debug), python3 with venv, curl, unshare.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv="$root/tests/.cache/st-venv"
if ! "$venv/bin/schemathesis" --version >/dev/null 2>&1; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'schemathesis>=4,<5'
fi
slicectl="$root/target/debug/slicectl"
work=$(mktemp -d)
server=
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/diycloud.toml" <<TOML
db = "$work/db"
[password]
memory_kib = 1024
iterations = 1
[lockout]
deny = 0
[api]
listen = "127.0.0.1:$port"
login_rate = 1000000
TOML
chmod 600 "$work/diycloud.toml"
ctl() { "$slicectl" --config "$work/diycloud.toml" "$@"; }
ctl init >/dev/null
echo 'fuzz admin password 1' | ctl user add fuzzadmin --role admin --no-system-account --password-stdin >/dev/null

if [ "$(id -u)" = 0 ]; then
    mkdir "$work/etc"
    cp -a /etc/. "$work/etc/"
    unshare --mount --propagation private sh -c '
        mount --bind "$1/etc" /etc && mount -t tmpfs tmpfs /home && exec "$2" --config "$1/diycloud.toml" serve
    ' sh "$work" "$slicectl" 2>"$work/server.log" &
else
    # Not root: useradd fails, so system accounts cannot be made anyway.
    ctl serve 2>"$work/server.log" &
fi
server=$!
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
    sleep 0.1
done
token=$(curl -sf -H 'Content-Type: application/json' \
    -d '{"username": "fuzzadmin", "password": "fuzz admin password 1"}' \
    "http://127.0.0.1:$port/api/v1/auth/login" | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
# From the scratch directory: schemathesis keeps its reports in ./.schemathesis.
cd "$work"
st_run() {
    "$venv/bin/schemathesis" run "http://127.0.0.1:$port/api/v1/openapi.json" \
        -H "Authorization: Bearer $token" \
        --checks all --exclude-checks positive_data_acceptance \
        --exclude-operation-id logout --exclude-operation-id changePassword \
        --max-examples 40 --workers 2 --no-color 2>&1 | tee "$work/st.log"
    return "${PIPESTATUS[0]}"
}
# Once more only when the tool itself broke: CPython 3.11 now and then
# raises "AST constructor recursion depth mismatch" while schemathesis
# builds its test cases (seen once in a CI run; the same versions passed
# the run before). Any other failure ends the run; a failed check of the
# API in the first run fails the second too.
if ! st_run; then
    if grep -q "AST constructor recursion depth mismatch" "$work/st.log"; then
        echo "schemathesis broke inside CPython (not a check of the API): running it once more"
        st_run
    else
        exit 1
    fi
fi
if grep -q "panicked" "$work/server.log"; then
    echo "FAIL: the server panicked:"; cat "$work/server.log"; exit 1
fi
echo "ok: schemathesis found no failures"
