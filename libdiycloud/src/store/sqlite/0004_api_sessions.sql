-- Version 4: sessions of the REST API (`slicectl serve`). A session is a
-- random bearer token; only its hash is stored, so a copy of the database
-- gives no usable token. Deleting the user deletes their sessions.
CREATE TABLE api_sessions (
    token_hash TEXT    PRIMARY KEY,                     -- hex BLAKE2s-256 of the token
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX api_sessions_user ON api_sessions(user_id);
-- Every login forgets the expired sessions: by this index, not a scan.
CREATE INDEX api_sessions_expiry ON api_sessions(expires_at);
