-- diycloud on PostgreSQL, version 1: the SQLite schema's version 5 in
-- PostgreSQL's dialect, for many nodes sharing one user base.
-- Times are Unix seconds (UTC); dates are 'YYYY-MM-DD'. Integers are BIGINT
-- throughout, so the client binds one type for all of them.

CREATE TABLE users (
    id                   BIGSERIAL PRIMARY KEY,
    username             TEXT    NOT NULL UNIQUE,
    password_hash        TEXT    NOT NULL,              -- argon2id PHC string
    email                TEXT,
    full_name            TEXT,
    uid                  BIGINT,                        -- the system account's uid, when known
    owns_system_account  BOOLEAN NOT NULL DEFAULT FALSE,
    created_at           BIGINT  NOT NULL,
    updated_at           BIGINT  NOT NULL,
    last_login           BIGINT,
    last_logout          BIGINT,
    password_changed_at  BIGINT,
    role                 TEXT    NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    is_active            BOOLEAN NOT NULL DEFAULT TRUE,
    expires_on           TEXT,
    failed_logins        BIGINT  NOT NULL DEFAULT 0,
    failure_window_start BIGINT,
    locked_at            BIGINT,
    pending              TEXT CHECK (pending IN ('add', 'del'))
);

CREATE TABLE resource_allocations (
    user_id     BIGINT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    cpu_limit   DOUBLE PRECISION,                       -- cores; NULL = infinity
    mem_limit   TEXT NOT NULL DEFAULT '2G',
    disk_quota  TEXT NOT NULL DEFAULT '5G',
    tasks_limit TEXT NOT NULL DEFAULT '4096',
    gpus        TEXT NOT NULL DEFAULT 'none'
);

CREATE TABLE audit_log (
    id       BIGSERIAL PRIMARY KEY,
    at       BIGINT NOT NULL,
    actor    TEXT   NOT NULL,
    action   TEXT   NOT NULL,
    username TEXT   NOT NULL,
    detail   TEXT   NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_username ON audit_log(username, at);

CREATE TABLE api_sessions (
    token_hash TEXT   PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX api_sessions_user ON api_sessions(user_id);
CREATE INDEX api_sessions_expiry ON api_sessions(expires_at);

-- Usage history and counters are facts of one node: each row names its node
-- (the host name), and each node reads and prunes its own.
CREATE TABLE usage_samples (
    id               BIGSERIAL PRIMARY KEY,
    node             TEXT   NOT NULL,
    user_id          BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    at               BIGINT NOT NULL,
    cpu_nsec         BIGINT,
    memory_bytes     BIGINT,
    tasks            BIGINT,
    disk_bytes       BIGINT,
    gpu_memory_bytes BIGINT
);
CREATE INDEX usage_samples_user_at ON usage_samples(node, user_id, at);
CREATE INDEX usage_samples_at ON usage_samples(node, at);

CREATE TABLE counters (
    node  TEXT   NOT NULL,
    name  TEXT   NOT NULL,
    value BIGINT NOT NULL,
    PRIMARY KEY (node, name)
);
