-- Version 9: the allocation in one canonical column. `limits` is a JSON
-- object of each limit's canonical text, keyed as the model's table of
-- limits names them (libdiycloud::model::limits::LIMITS): a limit added
-- later needs no migration (a key a row lacks reads as its default), and a
-- change merges only the limits it names (json_patch).
ALTER TABLE resource_allocations ADD COLUMN limits TEXT NOT NULL DEFAULT '{}';
-- cpu_limit was cores as REAL (NULL: infinity): its canonical text is at
-- most two decimals without trailing zeros, as Cpu prints it (1.5, 0.05, 2).
UPDATE resource_allocations SET limits = json_object(
    'cpu', CASE WHEN cpu_limit IS NULL THEN 'infinity'
                ELSE rtrim(rtrim(printf('%.2f', cpu_limit), '0'), '.') END,
    'memory', mem_limit,
    'memory_high', memory_high,
    'tasks', tasks_limit,
    'disk', disk_quota,
    'gpus', gpus,
    'cpu_weight', cpu_weight,
    'io_weight', io_weight
);
ALTER TABLE resource_allocations DROP COLUMN cpu_limit;
ALTER TABLE resource_allocations DROP COLUMN mem_limit;
ALTER TABLE resource_allocations DROP COLUMN memory_high;
ALTER TABLE resource_allocations DROP COLUMN tasks_limit;
ALTER TABLE resource_allocations DROP COLUMN disk_quota;
ALTER TABLE resource_allocations DROP COLUMN gpus;
ALTER TABLE resource_allocations DROP COLUMN cpu_weight;
ALTER TABLE resource_allocations DROP COLUMN io_weight;
