-- Version 2: limit events (as SQLite's version 6): the times the kernel
-- enforced a user's allocation, per node, shown to the user once at their
-- next login.
CREATE TABLE limit_events (
    id             BIGSERIAL PRIMARY KEY,
    user_id        BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    node           TEXT   NOT NULL,
    first_at       BIGINT NOT NULL,
    at             BIGINT NOT NULL,
    kind           TEXT   NOT NULL CHECK (kind IN ('oom_kill', 'memory_high', 'cpu_throttled')),
    count          BIGINT NOT NULL CHECK (count >= 0),
    throttled_usec BIGINT NOT NULL DEFAULT 0 CHECK (throttled_usec >= 0),
    lim            TEXT,
    processes      TEXT   NOT NULL DEFAULT '[]',
    shown          BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX limit_events_user ON limit_events(user_id, shown, kind, at);
CREATE INDEX limit_events_at ON limit_events(node, at);
