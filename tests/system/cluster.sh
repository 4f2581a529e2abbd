#!/usr/bin/env bash
# The cluster store on a real PostgreSQL server (Debian's package), started
# here and thrown away after:
# - every store test of libdiycloud runs against both backends (SQLite and
#   PostgreSQL, over TLS verified against the test CA);
# - slicectl/tests/cluster.rs: two nodes (two configs, two caches) log users in
#   through real libpam, through an outage (server frozen, then stopped)
#   and under 50 parallel logins during admin writes;
# - bench_cluster: PAM authenticate on PostgreSQL against SQLite (needs the
#   release build: run-all.sh runs this after the benchmarks).
# Needs root (the module trusts only root's files).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
# shellcheck source=tests/system/postgres-server.sh
source tests/system/postgres-server.sh
pg_install
dir=$(mktemp -d /tmp/diycloud-pg.XXXXXX)
rmdir "$dir"
# A free port: the kernel's pick, released for the server.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
trap 'pg_cleanup "$dir" >/dev/null 2>&1 || true' EXIT
pg_start "$dir" "$port"
export DIYCLOUD_TEST_PG_URL="$PG_URL?sslmode=require"
export DIYCLOUD_TEST_PG_PASSWORD_FILE="$PG_PASSWORD_FILE"
export DIYCLOUD_TEST_PG_CA="$PG_CA"
export DIYCLOUD_TEST_PG_DIR="$dir"
export DIYCLOUD_TEST_PG_REQUIRED=1
echo "-- the store's tests on SQLite and PostgreSQL ($PG_URL, TLS)"
cargo test -p libdiycloud --locked --lib store:: -- --test-threads 4
echo "-- two nodes, one user base (slicectl/tests/cluster.rs)"
DIYCLOUD_TEST_PG_URL="$PG_URL" cargo test -p slicectl --locked --test cluster -- --ignored --nocapture --test-threads 1
echo "-- benchmark: PAM authenticate on PostgreSQL (kept and new connections, cache warm and cold) against SQLite"
pg_psql "$dir" "CREATE SCHEMA bench AUTHORIZATION diycloud"
target/release/bench_cluster --url "$PG_URL" --password-file "$PG_PASSWORD_FILE" --ca "$PG_CA" --rounds 100 --check
