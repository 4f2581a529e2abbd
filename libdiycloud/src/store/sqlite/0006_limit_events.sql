-- Version 6: limit events, the times the kernel enforced a user's
-- allocation (an OOM kill, reclaim above MemoryHigh, CPU throttling), as
-- `slicectl serve` watches them; shown to the user once, at their next
-- login. `[events] keep` and `max_rows` bound the table. Deleting the user
-- deletes their events.
CREATE TABLE limit_events (
    id             INTEGER PRIMARY KEY,
    user_id        INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    node           TEXT    NOT NULL,
    first_at       INTEGER NOT NULL,  -- unix seconds
    at             INTEGER NOT NULL,  -- the last seen, for a run of them
    kind           TEXT    NOT NULL CHECK (kind IN ('oom_kill', 'memory_high', 'cpu_throttled')),
    count          INTEGER NOT NULL CHECK (count >= 0),
    throttled_usec INTEGER NOT NULL DEFAULT 0 CHECK (throttled_usec >= 0),
    lim            TEXT,              -- the limit in force, as written ("8G", "200%")
    processes      TEXT    NOT NULL DEFAULT '[]',  -- JSON array of killed processes' names
    shown          INTEGER NOT NULL DEFAULT 0 CHECK (shown IN (0, 1))
);
CREATE INDEX limit_events_user ON limit_events(user_id, shown, kind, at);
CREATE INDEX limit_events_at ON limit_events(at);
