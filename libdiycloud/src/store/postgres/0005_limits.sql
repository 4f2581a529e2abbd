-- Version 5: the allocation in one canonical column, as SQLite's version 9.
-- `limits` is a JSON object of each limit's canonical text, keyed as the
-- model's table of limits names them: a limit added later needs no
-- migration (a key a row lacks reads as its default), and a change merges
-- only the limits it names (`||`).
ALTER TABLE resource_allocations ADD COLUMN limits JSONB NOT NULL DEFAULT '{}';
-- cpu_limit was cores (NULL: infinity): its canonical text is at most two
-- decimals without trailing zeros, as Cpu prints it (1.5, 0.05, 2).
UPDATE resource_allocations SET limits = jsonb_build_object(
    'cpu', CASE WHEN cpu_limit IS NULL THEN 'infinity'
                ELSE rtrim(rtrim(to_char(cpu_limit, 'FM999999990.00'), '0'), '.') END,
    'memory', mem_limit,
    'memory_high', memory_high,
    'tasks', tasks_limit,
    'disk', disk_quota,
    'gpus', gpus,
    'cpu_weight', cpu_weight,
    'io_weight', io_weight
);
ALTER TABLE resource_allocations
    DROP COLUMN cpu_limit,
    DROP COLUMN mem_limit,
    DROP COLUMN memory_high,
    DROP COLUMN tasks_limit,
    DROP COLUMN disk_quota,
    DROP COLUMN gpus,
    DROP COLUMN cpu_weight,
    DROP COLUMN io_weight;
