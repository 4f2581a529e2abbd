-- Version 4: fair share (as SQLite's version 8).
ALTER TABLE resource_allocations ADD COLUMN cpu_weight  TEXT NOT NULL DEFAULT '100';
ALTER TABLE resource_allocations ADD COLUMN io_weight   TEXT NOT NULL DEFAULT '100';
ALTER TABLE resource_allocations ADD COLUMN memory_high TEXT NOT NULL DEFAULT 'infinity';
