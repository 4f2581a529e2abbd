-- Version 3: which granted GPUs their users use (as SQLite's version 7).
CREATE TABLE gpu_use (
    user_id        BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    node           TEXT   NOT NULL,
    gpu            TEXT   NOT NULL,
    granted_since  BIGINT NOT NULL,
    last_used      BIGINT,
    PRIMARY KEY (user_id, node, gpu)
);
