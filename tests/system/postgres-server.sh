# shellcheck shell=bash
# A throwaway PostgreSQL server for system tests, started by the test itself
# (no systemd, no use of Debian's default cluster). Source this file, then:
#
#   pg_install                   # apt-get the server, client and openssl if missing
#   pg_start DIR PORT            # initdb + TLS + role/database diycloud, exports PG_*
#   pg_psql DIR SQL...           # psql as the superuser over DIR/sock, on database diycloud
#   pg_stop DIR                  # fast shutdown; fine when already stopped
#   pg_restart DIR               # start again on the same data
#   pg_cleanup DIR               # stop, then remove DIR
#
# After pg_start (and pg_restart) these are exported:
#   PG_URL=postgresql://diycloud@127.0.0.1:PORT/diycloud   (no password in it)
#   PG_PASSWORD_FILE=DIR/password   one line, WITH a trailing newline, root-only (0600)
#   PG_CA=DIR/tls/ca.crt            the CA that signed the server's certificate
#   PG_DIR=DIR  PG_PORT=PORT
# The server takes both TLS and plain TCP on 127.0.0.1 (SCRAM-SHA-256 either
# way), so the client's sslmode decides; the certificate is valid for
# localhost and 127.0.0.1, so sslmode=verify-full works with sslrootcert=$PG_CA.
#
# Everything runs as root; the server itself runs as the postgres user, so
# DIR's parents must be searchable by postgres (/tmp is; /root is not).
# No shell options are set here: the functions work under set -euo pipefail
# and report errors on stderr with a non-zero status.

_pg_err() {
    echo "postgres-server: $*" >&2
}

# The newest server version's bin directory (initdb, pg_ctl, psql...);
# Debian keeps them off PATH under /usr/lib/postgresql/<version>/bin.
_pg_bindir() {
    local dir
    dir=$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/initdb' -printf '%h\n' 2>/dev/null |
        sort -V | tail -n 1) || true
    if [[ -z "$dir" ]]; then
        _pg_err "no /usr/lib/postgresql/<version>/bin/initdb; run pg_install"
        return 1
    fi
    echo "$dir"
}

# Commands as the postgres user, from /, so that a cwd postgres cannot read
# (root's home) draws no warnings; PG* connection settings the test exports
# for its own client must not leak into the superuser's connections.
_pg_as_postgres() {
    (cd / && runuser -u postgres -- env -u PGHOST -u PGHOSTADDR -u PGPORT -u PGUSER \
        -u PGDATABASE -u PGPASSWORD -u PGPASSFILE -u PGSERVICE -u PGOPTIONS \
        -u PGSSLMODE -u PGSSLROOTCERT "$@")
}

# Clusters of Debian's own (pg_lsclusters), as "version name" lines, online only.
_pg_online_clusters() {
    command -v pg_lsclusters >/dev/null 2>&1 || return 0
    pg_lsclusters --no-header 2>/dev/null | awk '$4 ~ /^online/ { print $1, $2 }'
}

pg_install() {
    if compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null &&
        command -v psql >/dev/null 2>&1 && command -v openssl >/dev/null 2>&1; then
        return 0
    fi
    local before after log cluster
    before=$(_pg_online_clusters)
    log=$(mktemp)
    # Fresh containers often have no package lists yet: update only then.
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        postgresql postgresql-client openssl >"$log" 2>&1; then
        if ! { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
                postgresql postgresql-client openssl; } >"$log" 2>&1; then
            cat "$log" >&2
            rm -f "$log"
            _pg_err "apt-get install postgresql failed"
            return 1
        fi
    fi
    rm -f "$log"
    # The package creates a default cluster (15/main on port 5432) and, where
    # invoke-rc.d lets it (an init without policy-rc.d), starts it; tests do
    # not use it, so stop whatever the install just started.
    after=$(_pg_online_clusters)
    while read -r cluster; do
        [[ -n "$cluster" ]] || continue
        if ! grep -qxF "$cluster" <<<"$before"; then
            # shellcheck disable=SC2086 # "version name", two words on purpose
            pg_ctlcluster $cluster stop || _pg_err "could not stop cluster $cluster the install started"
        fi
    done <<<"$after"
    if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
        _pg_err "installed, but no /usr/lib/postgresql/*/bin/initdb"
        return 1
    fi
}

# pg_ctl and psql run from / (see _pg_as_postgres): paths must be absolute.
_pg_abs() {
    if [[ "$1" = /* ]]; then echo "$1"; else echo "$PWD/$1"; fi
}

# Exports the PG_* variables for a server made by pg_start in DIR.
_pg_export() {
    local dir=$1 port
    port=$(cat "$dir/port") || { _pg_err "$dir/port missing: not made by pg_start?"; return 1; }
    export PG_DIR="$dir" PG_PORT="$port"
    export PG_URL="postgresql://diycloud@127.0.0.1:$port/diycloud"
    export PG_PASSWORD_FILE="$dir/password"
    export PG_CA="$dir/tls/ca.crt"
}

# A CA for this server alone, and a certificate for localhost/127.0.0.1 that
# it signed: clients can then verify the host (verify-full), not just encrypt.
# ECDSA P-256: generated in milliseconds, and every TLS stack takes it.
_pg_tls() {
    local tls=$1
    mkdir -p "$tls" && chmod 0755 "$tls" || return 1
    (
        cd "$tls" &&
            openssl req -x509 -new -sha256 -days 7 -nodes \
                -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
                -keyout ca.key -out ca.crt -subj '/CN=diycloud test CA' \
                -addext 'basicConstraints=critical,CA:TRUE' \
                -addext 'keyUsage=critical,keyCertSign,cRLSign' &&
            openssl req -new -sha256 -nodes \
                -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
                -keyout server.key -out server.csr -subj '/CN=localhost' &&
            printf '%s\n' 'basicConstraints=critical,CA:FALSE' \
                'keyUsage=critical,digitalSignature' \
                'extendedKeyUsage=serverAuth' \
                'subjectAltName=DNS:localhost,IP:127.0.0.1' >server.ext &&
            openssl x509 -req -sha256 -days 7 -in server.csr -CA ca.crt -CAkey ca.key \
                -CAcreateserial -extfile server.ext -out server.crt &&
            rm -f server.csr server.ext ca.srl
    ) >/dev/null 2>&1 || { _pg_err "openssl could not make the certificates in $tls"; return 1; }
    chmod 0600 "$tls/ca.key" "$tls/server.key" &&
        chmod 0644 "$tls/ca.crt" "$tls/server.crt" &&
        # The server refuses a key that its own user cannot read or others can.
        chown postgres:postgres "$tls/server.key"
}

pg_start() {
    if [[ $# -ne 2 ]]; then
        _pg_err "usage: pg_start DIR PORT"
        return 2
    fi
    local dir port=$2 bin password
    dir=$(_pg_abs "$1")
    [[ "$port" =~ ^[0-9]+$ ]] || { _pg_err "bad port: $port"; return 2; }
    if [[ -e "$dir/data" ]]; then
        _pg_err "$dir/data exists: use pg_restart, or pg_cleanup first"
        return 1
    fi
    # A unix socket's path is limited to 107 bytes (sun_path).
    if (( ${#dir} + ${#port} + 17 > 107 )); then
        _pg_err "$dir is too long for a unix socket path"
        return 1
    fi
    bin=$(_pg_bindir) || return 1
    # DIR stays root's: the password file in it must pass diycloud's trust
    # rules (root's file in root's directories). The server's own parts are
    # the postgres user's.
    mkdir -p "$dir/sock" "$dir/data" && touch "$dir/log" && chmod 0755 "$dir" && chmod 0700 "$dir/data" &&
        chown postgres:postgres "$dir/sock" "$dir/data" "$dir/log" || return 1
    if ! runuser -u postgres -- test -x "$dir"; then
        _pg_err "the postgres user cannot reach $dir (a parent directory is closed to it)"
        return 1
    fi
    # --no-sync, like fsync=off below: the data is thrown away anyway.
    if ! _pg_as_postgres "$bin/initdb" -D "$dir/data" -U postgres --encoding=UTF8 --locale=C \
        --auth-local=peer --auth-host=scram-sha-256 --no-sync >"$dir/initdb.log" 2>&1; then
        cat "$dir/initdb.log" >&2
        _pg_err "initdb failed in $dir/data"
        return 1
    fi
    _pg_tls "$dir/tls" || return 1
    # Later settings win, so appending overrides initdb's defaults.
    cat >>"$dir/data/postgresql.conf" <<EOF

# Throwaway test server (tests/system/postgres-server.sh)
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/sock'
max_connections = 200
fsync = off
ssl = on
ssl_cert_file = '$dir/tls/server.crt'
ssl_key_file = '$dir/tls/server.key'
EOF
    # hostssl and host both: a client may connect with TLS or without.
    cat >"$dir/data/pg_hba.conf" <<EOF
local   all  all                 peer
hostssl all  all  127.0.0.1/32   scram-sha-256
host    all  all  127.0.0.1/32   scram-sha-256
EOF
    printf '%s\n' "$port" >"$dir/port" || return 1
    if ! _pg_as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w start >/dev/null; then
        tail -n 20 "$dir/log" >&2 2>/dev/null || true
        _pg_err "the server in $dir did not start (see $dir/log)"
        return 1
    fi
    password=$(openssl rand -hex 24) || { _pg_err "openssl rand failed"; return 1; }
    # Through stdin, not argv, so that ps does not show the password; hex
    # needs no quoting. CREATE DATABASE cannot run in a transaction block:
    # psql without -1 runs each statement on its own.
    if ! printf '%s\n' \
        "SET password_encryption = 'scram-sha-256';" \
        "CREATE ROLE diycloud LOGIN PASSWORD '$password';" \
        "CREATE DATABASE diycloud OWNER diycloud;" |
        _pg_as_postgres "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir/sock" -p "$port" \
            -U postgres -d postgres >/dev/null; then
        _pg_err "could not create the role and database diycloud"
        return 1
    fi
    # umask first: the password is never readable by others, not even briefly.
    (umask 077 && printf '%s\n' "$password" >"$dir/password") || return 1
    _pg_export "$dir"
}

pg_stop() {
    if [[ $# -ne 1 ]]; then
        _pg_err "usage: pg_stop DIR"
        return 2
    fi
    local dir bin
    dir=$(_pg_abs "$1")
    # Nothing to stop: never made, already removed, or already stopped.
    [[ -f "$dir/data/postmaster.pid" ]] || return 0
    bin=$(_pg_bindir) || return 1
    if ! _pg_as_postgres "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        return 0
    fi
    if ! _pg_as_postgres "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null; then
        _pg_err "the server in $dir did not stop"
        return 1
    fi
}

pg_restart() {
    if [[ $# -ne 1 ]]; then
        _pg_err "usage: pg_restart DIR"
        return 2
    fi
    local dir bin
    dir=$(_pg_abs "$1")
    [[ -d "$dir/data" ]] || { _pg_err "no server in $dir: use pg_start"; return 1; }
    bin=$(_pg_bindir) || return 1
    pg_stop "$dir" || return 1
    if ! _pg_as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w start >/dev/null; then
        tail -n 20 "$dir/log" >&2 2>/dev/null || true
        _pg_err "the server in $dir did not start again (see $dir/log)"
        return 1
    fi
    _pg_export "$dir"
}

pg_cleanup() {
    if [[ $# -ne 1 ]]; then
        _pg_err "usage: pg_cleanup DIR"
        return 2
    fi
    local dir=$1
    # rm -rf on an empty or root path would be a disaster, not a cleanup.
    if [[ -z "$dir" || "$dir" = / ]]; then
        _pg_err "refusing to remove '$dir'"
        return 1
    fi
    pg_stop "$dir" || return 1
    rm -rf -- "$dir"
}

pg_psql() {
    if [[ $# -lt 2 ]]; then
        _pg_err "usage: pg_psql DIR SQL..."
        return 2
    fi
    local dir bin port sql
    local -a args=()
    dir=$(_pg_abs "$1")
    shift
    bin=$(_pg_bindir) || return 1
    port=$(cat "$dir/port") || { _pg_err "$dir/port missing: not made by pg_start?"; return 1; }
    for sql in "$@"; do
        args+=(-c "$sql")
    done
    _pg_as_postgres "$bin/psql" -X -A -t -q -v ON_ERROR_STOP=1 \
        -h "$dir/sock" -p "$port" -U postgres -d diycloud "${args[@]}"
}
