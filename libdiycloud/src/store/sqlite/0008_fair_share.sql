-- Version 8: fair share. Each user's weights for contended CPU and disk
-- time (1..10000, everyone's default 100) and soft memory limit (a size,
-- or 'infinity' for none), stored as text like the other limits.
ALTER TABLE resource_allocations ADD COLUMN cpu_weight  TEXT NOT NULL DEFAULT '100';
ALTER TABLE resource_allocations ADD COLUMN io_weight   TEXT NOT NULL DEFAULT '100';
ALTER TABLE resource_allocations ADD COLUMN memory_high TEXT NOT NULL DEFAULT 'infinity';
