-- diycloud schema, version 1. Extends the phase-2 seed schema (users,
-- resource_allocations) with accounts, expiry, lockout and an audit log.
-- Times are Unix seconds (UTC); dates are 'YYYY-MM-DD'.

CREATE TABLE users (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    username             TEXT    NOT NULL UNIQUE,
    password_hash        TEXT    NOT NULL,              -- argon2id PHC string
    email                TEXT,
    full_name            TEXT,
    uid                  INTEGER,                       -- the system account's uid, when known
    owns_system_account  INTEGER NOT NULL DEFAULT 0,    -- 1: slicectl created it and removes it
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    last_login           INTEGER,
    password_changed_at  INTEGER,
    role                 TEXT    NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    is_active            INTEGER NOT NULL DEFAULT 1     CHECK (is_active IN (0, 1)),
    expires_on           TEXT,                          -- account stops working on this day
    failed_logins        INTEGER NOT NULL DEFAULT 0,    -- failures in the current window
    failure_window_start INTEGER,
    locked_at            INTEGER
);

CREATE TABLE resource_allocations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     INTEGER NOT NULL UNIQUE REFERENCES users(id) ON DELETE CASCADE,
    cpu_limit   REAL,                                   -- cores; NULL = infinity
    mem_limit   TEXT    NOT NULL DEFAULT '2G',          -- systemd size syntax
    disk_quota  TEXT    NOT NULL DEFAULT '5G',
    tasks_limit TEXT    NOT NULL DEFAULT '4096',
    gpus        TEXT    NOT NULL DEFAULT 'none'         -- none | all | indices/UUIDs, comma-separated
);

CREATE TABLE audit_log (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    actor    TEXT    NOT NULL,                          -- e.g. 'root', 'pam:sshd'
    action   TEXT    NOT NULL,                          -- e.g. 'user.add', 'user.lock'
    username TEXT    NOT NULL,
    detail   TEXT    NOT NULL DEFAULT '{}'              -- JSON: what changed (never a secret)
);
CREATE INDEX audit_log_username ON audit_log(username, at);
