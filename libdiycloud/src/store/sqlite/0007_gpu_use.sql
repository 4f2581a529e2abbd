-- Version 7: which granted GPUs their users use, for the flag on GPUs
-- granted but idle (`[gpus] idle_after`). One row per user, node and GPU
-- granted by name (index, UUID or MIG instance), written by the usage
-- sampler of `slicectl serve`; a grant taken away takes its row.
CREATE TABLE gpu_use (
    user_id        INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    node           TEXT    NOT NULL,
    gpu            TEXT    NOT NULL,  -- the GPU's UUID, or "index N" without one
    granted_since  INTEGER NOT NULL,  -- unix seconds: first seen granted
    last_used      INTEGER,           -- last seen with a process of theirs on it
    PRIMARY KEY (user_id, node, gpu)
) WITHOUT ROWID;
