//! Limit events: the times the kernel enforced a user's allocation (a
//! process OOM-killed, memory reclaimed above the soft limit, CPU held to
//! the quota), read from the slice's counters and the kernel log, and the
//! notice a user reads at their next login.

use serde::Serialize;

use super::limits::{Allocation, Cpu, Size};
use super::slice::uid_of_slice_path;
use super::time::Timestamp;

/// What the kernel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A process was killed for memory over `MemoryMax` (`oom_kill`).
    OomKill,
    /// Memory went over `MemoryHigh` and was reclaimed, the processes slowed (`high`).
    MemoryHigh,
    /// The slice ran out of its CPU quota and waited (`nr_throttled`).
    CpuThrottled,
}

impl EventKind {
    pub const ALL: [EventKind; 3] = [
        EventKind::OomKill,
        EventKind::MemoryHigh,
        EventKind::CpuThrottled,
    ];

    /// As the database and `--json` write it.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::OomKill => "oom_kill",
            EventKind::MemoryHigh => "memory_high",
            EventKind::CpuThrottled => "cpu_throttled",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether one row stands for a run of these: throttling and reclaim
    /// come in thousands while a user is busy, and read best as a total
    /// over a stretch of time. A kill is a row of its own, with its time.
    pub fn merges(self) -> bool {
        !matches!(self, EventKind::OomKill)
    }
}

/// How far apart two runs of throttling (or reclaim) may be and still be
/// one row.
pub const MERGE_WINDOW_SECS: i64 = 3600;

/// The most process names one OOM row keeps (a fork bomb's kills would
/// otherwise fill it).
pub const MAX_PROCESS_NAMES: usize = 8;

/// One row: one kill, or a run of throttling or reclaim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LimitEvent {
    pub username: String,
    /// The node it happened on (its host name).
    pub node: String,
    /// When it was first seen, and last (the same for a kill).
    pub first_at: Timestamp,
    pub at: Timestamp,
    pub kind: EventKind,
    /// Processes killed, times reclaimed above `MemoryHigh`, or CPU
    /// periods throttled.
    pub count: u64,
    /// Throttling: how long the slice waited for CPU, in microseconds.
    pub throttled_usec: u64,
    /// The limit in force when it was seen, as the allocation writes it
    /// (`8G`, `2 cores`); `None` where the allocation had none.
    pub limit: Option<String>,
    /// The killed processes' names, from the kernel log, where it has them.
    pub processes: Vec<String>,
    /// Whether the user has read it at a login.
    pub shown: bool,
}

// ------------------------------------------------------------ slice counters

/// The kernel's counters of one user slice, as read at one time (`None`:
/// the file or key is not there, e.g. no CPU quota, or cgroup v1's lack of
/// `memory.high`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SliceCounters {
    /// The cgroup directory's inode: a new one is a new slice, whose
    /// counters start over at 0.
    pub cgroup_id: u64,
    pub oom_kill: Option<u64>,
    pub high: Option<u64>,
    pub nr_throttled: Option<u64>,
    pub throttled_usec: Option<u64>,
}

/// What happened between two readings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterDelta {
    pub oom_kill: u64,
    pub high: u64,
    pub nr_throttled: u64,
    pub throttled_usec: u64,
}

impl CounterDelta {
    pub fn is_empty(&self) -> bool {
        *self == CounterDelta::default()
    }
}

/// The change from `before` to `after`. Where the slice is a new one (or a
/// counter went down, which only a new slice does), the new counters are
/// all that happened since.
pub fn delta(before: &SliceCounters, after: &SliceCounters) -> CounterDelta {
    let restarted = before.cgroup_id != after.cgroup_id;
    let since = |b: Option<u64>, a: Option<u64>| match (b, a) {
        (_, None) => 0,
        (Some(b), Some(a)) if !restarted && a >= b => a - b,
        (Some(_), Some(a)) => a,
        // A counter that appeared (a quota set meanwhile) starts at 0.
        (None, Some(a)) if restarted => a,
        (None, Some(_)) => 0,
    };
    CounterDelta {
        oom_kill: since(before.oom_kill, after.oom_kill),
        high: since(before.high, after.high),
        nr_throttled: since(before.nr_throttled, after.nr_throttled),
        throttled_usec: since(before.throttled_usec, after.throttled_usec),
    }
}

/// `key value` lines (`memory.events`, `cpu.stat`, `memory.oom_control`):
/// the value of `key`.
fn flat_key(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// cgroup v2 `memory.events`: `(oom_kill, high)`.
pub fn parse_memory_events(text: &str) -> (Option<u64>, Option<u64>) {
    (flat_key(text, "oom_kill"), flat_key(text, "high"))
}

/// cgroup v1 `memory.oom_control`: `oom_kill` (kernel 4.13 and later).
pub fn parse_oom_control(text: &str) -> Option<u64> {
    flat_key(text, "oom_kill")
}

/// `cpu.stat`: `(nr_throttled, throttled microseconds)`; v2 counts
/// `throttled_usec`, v1 `throttled_time` in nanoseconds.
pub fn parse_cpu_stat(text: &str) -> (Option<u64>, Option<u64>) {
    let usec = flat_key(text, "throttled_usec")
        .or_else(|| flat_key(text, "throttled_time").map(|ns| ns / 1000));
    (flat_key(text, "nr_throttled"), usec)
}

/// The CPU time a cgroup has used, in nanoseconds: v2 `cpu.stat`'s
/// `usage_usec`, or v1 `cpuacct.usage` (a bare number of nanoseconds).
pub fn parse_cpu_usage(text: &str) -> Option<u64> {
    flat_key(text, "usage_usec")
        .map(|usec| usec.saturating_mul(1000))
        .or_else(|| text.trim().parse().ok())
}

// --------------------------------------------------------------- kernel log

/// One OOM kill as the kernel logs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OomKill {
    /// The uid of the user slice the killed process was in.
    pub slice_uid: u32,
    pub process: String,
}

/// A `/dev/kmsg` record's kill: `PRIO,SEQ,USEC,FLAGS;oom-kill:...,
/// task_memcg=/user.slice/user-1001.slice/...,task=NAME,pid=N,uid=N`
/// (kernel 4.19 and later). `None` for any other record, and for kills
/// outside user slices.
pub fn parse_oom_record(record: &str) -> Option<OomKill> {
    let message = record.split_once(';')?.1;
    let message = message.lines().next()?;
    let fields = message.strip_prefix("oom-kill:")?;
    let memcg = fields
        .split(',')
        .find_map(|f| f.strip_prefix("task_memcg="))?;
    // The name may hold commas: it runs to the last ",pid=".
    let from = fields.find(",task=")? + ",task=".len();
    let to = from + fields[from..].rfind(",pid=")?;
    Some(OomKill {
        slice_uid: uid_of_slice_path(memcg)?,
        process: printable(&fields[from..to]),
    })
}

/// A process name as it may be shown: control characters (which a name
/// can hold) as `?`, at most 16 characters (the kernel's own bound).
fn printable(name: &str) -> String {
    name.chars()
        .take(16)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// A memory limit as an event names it; `None`: there is none.
fn size_limit(size: Size) -> Option<String> {
    (size != Size::Infinity).then(|| size.to_string())
}

/// Each name once, in order, at most [`MAX_PROCESS_NAMES`].
fn distinct_names<'a>(names: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let mut distinct: Vec<String> = Vec::new();
    for name in names {
        if !distinct.contains(name) && distinct.len() < MAX_PROCESS_NAMES {
            distinct.push(name.clone());
        }
    }
    distinct
}

// ------------------------------------------------------------ a watch round

/// The events of one user in one round of watching: what their counters
/// did since the last round, and the kills the kernel logged for their
/// slice meanwhile (the log has the names, and sees kills in a slice gone
/// since; the counter sees kills the log lost). `allocation` gives the
/// limits the events name.
pub fn round_events(
    username: &str,
    node: &str,
    now: Timestamp,
    allocation: &Allocation,
    delta: CounterDelta,
    killed: &[String],
) -> Vec<LimitEvent> {
    let event =
        |kind, count, throttled_usec, limit: Option<String>, processes: Vec<String>| LimitEvent {
            username: username.to_owned(),
            node: node.to_owned(),
            first_at: now,
            at: now,
            kind,
            count,
            throttled_usec,
            limit,
            processes,
            shown: false,
        };
    let mut events = Vec::new();
    let kills = delta.oom_kill.max(killed.len() as u64);
    if kills > 0 {
        let names = distinct_names(killed);
        let limit = size_limit(allocation.memory);
        events.push(event(EventKind::OomKill, kills, 0, limit, names));
    }
    if delta.high > 0 {
        let limit = size_limit(allocation.memory_high);
        events.push(event(
            EventKind::MemoryHigh,
            delta.high,
            0,
            limit,
            Vec::new(),
        ));
    }
    if delta.nr_throttled > 0 {
        let limit = match allocation.cpu {
            Cpu::Percent(100) => Some("1 core".to_owned()),
            Cpu::Percent(_) => Some(format!("{} cores", allocation.cpu)),
            Cpu::Infinity => None,
        };
        events.push(event(
            EventKind::CpuThrottled,
            delta.nr_throttled,
            delta.throttled_usec,
            limit,
            Vec::new(),
        ));
    }
    events
}

// ------------------------------------------------------------------ notices

/// The lines a user reads at login about `events` (theirs, not yet shown),
/// or nothing where there are none.
pub fn notice(events: &[LimitEvent]) -> Option<String> {
    let mut lines = Vec::new();
    for kind in EventKind::ALL {
        let of_kind: Vec<&LimitEvent> = events.iter().filter(|e| e.kind == kind).collect();
        let count: u64 = of_kind.iter().map(|e| e.count).sum();
        if count == 0 {
            continue;
        }
        // The limit as it was most recently.
        let limit = of_kind
            .iter()
            .max_by_key(|e| e.at)
            .and_then(|e| e.limit.clone());
        lines.push(match kind {
            EventKind::OomKill => {
                let names = distinct_names(of_kind.iter().flat_map(|e| &e.processes));
                let what = match count {
                    1 => "1 process was".to_owned(),
                    n => format!("{n} processes were"),
                };
                let over = match limit {
                    Some(limit) => format!("more than {limit} of memory"),
                    None => "more memory than your allocation".to_owned(),
                };
                let names = match names.is_empty() {
                    true => String::new(),
                    false => format!(" ({})", names.join(", ")),
                };
                format!("{what} stopped for using {over}{names}.")
            }
            EventKind::MemoryHigh => {
                let over = match limit {
                    Some(limit) => format!("your soft memory limit ({limit})"),
                    None => "your soft memory limit".to_owned(),
                };
                format!(
                    "Your processes were slowed down {} for going over {over}.",
                    times(count)
                )
            }
            EventKind::CpuThrottled => {
                let usec: u64 = of_kind.iter().map(|e| e.throttled_usec).sum();
                let quota = match limit {
                    Some(limit) => format!("your CPU quota ({limit})"),
                    None => "your CPU quota".to_owned(),
                };
                format!(
                    "Your processes were held to {quota} {}, waiting {} in all.",
                    times(count),
                    waited(usec)
                )
            }
        });
    }
    if lines.is_empty() {
        return None;
    }
    let mut text = String::from("diycloud: since your last login:");
    for line in lines {
        text.push_str("\n  ");
        text.push_str(&line);
    }
    Some(text)
}

fn times(n: u64) -> String {
    match n {
        1 => "once".into(),
        2 => "twice".into(),
        n => format!("{n} times"),
    }
}

/// A wait, rounded for people: `850 ms`, `12 s`, `35 min`, `2.5 h`.
fn waited(usec: u64) -> String {
    let ms = usec / 1000;
    match ms {
        0..=999 => format!("{ms} ms"),
        1000..=119_999 => format!("{} s", ms / 1000),
        120_000..=7_199_999 => format!("{} min", ms / 60_000),
        _ => format!("{:.1} h", ms as f64 / 3_600_000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(id: u64, oom: u64, high: Option<u64>, thr: Option<(u64, u64)>) -> SliceCounters {
        SliceCounters {
            cgroup_id: id,
            oom_kill: Some(oom),
            high,
            nr_throttled: thr.map(|t| t.0),
            throttled_usec: thr.map(|t| t.1),
        }
    }

    #[test]
    fn counters_from_the_kernels_files() {
        let v2 = "low 0\nhigh 17\nmax 3\noom 1\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(parse_memory_events(v2), (Some(2), Some(17)));
        assert_eq!(parse_memory_events(""), (None, None));
        // "oom_group_kill" is not "oom_kill"; a garbled value is no value.
        assert_eq!(
            parse_memory_events("oom_group_kill 5\noom_kill x\n"),
            (None, None)
        );
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n";
        assert_eq!(parse_oom_control(v1), Some(4));
        assert_eq!(parse_oom_control("oom_kill_disable 0\nunder_oom 0\n"), None);
        let stat2 = "usage_usec 9000\nuser_usec 1\nsystem_usec 2\nnr_periods 40\nnr_throttled 12\nthrottled_usec 345678\n";
        assert_eq!(parse_cpu_stat(stat2), (Some(12), Some(345_678)));
        let stat1 = "nr_periods 40\nnr_throttled 3\nthrottled_time 2500000\n";
        assert_eq!(parse_cpu_stat(stat1), (Some(3), Some(2500)));
        // No quota on v2: only the usage keys.
        assert_eq!(parse_cpu_stat("usage_usec 9000\n"), (None, None));
        assert_eq!(parse_cpu_usage(stat2), Some(9_000_000));
        assert_eq!(
            parse_cpu_usage("123456789\n"),
            Some(123_456_789),
            "v1 cpuacct.usage"
        );
        assert_eq!(parse_cpu_usage("nr_periods 5\n"), None);
    }

    #[test]
    fn deltas_between_readings() {
        let a = counters(7, 1, Some(10), Some((5, 1000)));
        let b = counters(7, 3, Some(10), Some((9, 4000)));
        assert_eq!(
            delta(&a, &b),
            CounterDelta {
                oom_kill: 2,
                high: 0,
                nr_throttled: 4,
                throttled_usec: 3000
            }
        );
        assert!(delta(&b, &b).is_empty());
        // A new slice (another inode) counts from 0, even where its
        // counters happen to be higher than the old one's.
        let new = counters(8, 5, Some(20), None);
        assert_eq!(delta(&b, &new).oom_kill, 5);
        assert_eq!(delta(&b, &new).high, 20);
        assert_eq!(delta(&b, &new).nr_throttled, 0, "no quota now: nothing");
        // A counter that went down: a new slice that reused the inode.
        let lower = counters(7, 1, Some(2), Some((1, 10)));
        assert_eq!(delta(&b, &lower).oom_kill, 1);
        assert_eq!(delta(&b, &lower).throttled_usec, 10);
        // A quota set meanwhile: its counters appear, and start from there.
        let quota = counters(7, 3, Some(10), Some((50, 9000)));
        assert!(delta(&counters(7, 3, Some(10), None), &quota).is_empty());
    }

    #[test]
    fn kills_from_kernel_log_records() {
        let record = "6,1234,5678901,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/user.slice/user-1001.slice,task_memcg=/user.slice/user-1001.slice/session-3.scope,task=python3,pid=4242,uid=1001\n";
        assert_eq!(
            parse_oom_record(record),
            Some(OomKill {
                slice_uid: 1001,
                process: "python3".into()
            })
        );
        // A name with a comma and ",pid=" in it, and a control character.
        let odd = "3,1,2,-;oom-kill:constraint=CONSTRAINT_MEMCG,task_memcg=/user.slice/user-7.slice/x.scope,task=a,pid=1\tb,pid=99,uid=7";
        assert_eq!(parse_oom_record(odd).unwrap().process, "a,pid=1?b");
        // The other lines of an OOM, kills outside user slices, garbage.
        for none in [
            "6,1,2,-;Memory cgroup out of memory: Killed process 4242 (python3) total-vm:1kB",
            "6,1,2,-;oom-kill:constraint=CONSTRAINT_NONE,task_memcg=/system.slice/x.service,task=x,pid=1,uid=0",
            "6,1,2,-;oom-kill:task=x,pid=1",
            "oom-kill:task_memcg=/user.slice/user-1.slice,task=x,pid=1",
            "",
            ";",
        ] {
            assert_eq!(parse_oom_record(none), None, "{none}");
        }
    }

    fn event(
        kind: EventKind,
        count: u64,
        usec: u64,
        limit: &str,
        processes: &[&str],
    ) -> LimitEvent {
        LimitEvent {
            username: "alice".into(),
            node: "gpu1".into(),
            first_at: Timestamp(100),
            at: Timestamp(200),
            kind,
            count,
            throttled_usec: usec,
            limit: (!limit.is_empty()).then(|| limit.to_owned()),
            processes: processes.iter().map(|p| p.to_string()).collect(),
            shown: false,
        }
    }

    #[test]
    fn notices_read_like_sentences() {
        assert_eq!(notice(&[]), None);
        let one = [event(EventKind::OomKill, 1, 0, "8G", &["python3"])];
        assert_eq!(
            notice(&one).unwrap(),
            "diycloud: since your last login:\n  1 process was stopped for using more than 8G of memory (python3)."
        );
        let all = [
            event(EventKind::OomKill, 1, 0, "8G", &["python3"]),
            event(EventKind::CpuThrottled, 40, 90_000_000, "2 cores", &[]),
            event(EventKind::OomKill, 1, 0, "8G", &["python3"]),
            event(EventKind::MemoryHigh, 2, 0, "6G", &[]),
            event(EventKind::CpuThrottled, 2, 60_000_000, "2 cores", &[]),
        ];
        let text = notice(&all).unwrap();
        assert!(
            text.contains("2 processes were stopped for using more than 8G of memory (python3)."),
            "{text}"
        );
        assert!(
            text.contains("slowed down twice for going over your soft memory limit (6G)."),
            "{text}"
        );
        assert!(
            text.contains("held to your CPU quota (2 cores) 42 times, waiting 2 min in all."),
            "{text}"
        );
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        // No limit known, no names.
        let bare = [event(EventKind::OomKill, 3, 0, "", &[])];
        assert!(notice(&bare)
            .unwrap()
            .ends_with("3 processes were stopped for using more memory than your allocation."));
    }

    #[test]
    fn a_rounds_events() {
        let allocation = Allocation {
            memory: Size::Bytes(8 << 30),
            cpu: Cpu::Percent(200),
            ..Allocation::default()
        };
        let none = round_events(
            "a",
            "n",
            Timestamp(5),
            &allocation,
            CounterDelta::default(),
            &[],
        );
        assert!(none.is_empty());
        let delta = CounterDelta {
            oom_kill: 1,
            high: 0,
            nr_throttled: 7,
            throttled_usec: 900,
        };
        let killed = ["python3".to_string(), "python3".to_string()];
        let events = round_events("a", "n", Timestamp(5), &allocation, delta, &killed);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].kind, EventKind::OomKill);
        assert_eq!(events[0].count, 2, "the log saw two, the counter one");
        assert_eq!(events[0].processes, vec!["python3"]);
        assert_eq!(events[0].limit.as_deref(), Some("8G"));
        assert_eq!(events[1].kind, EventKind::CpuThrottled);
        assert_eq!((events[1].count, events[1].throttled_usec), (7, 900));
        assert_eq!(events[1].limit.as_deref(), Some("2 cores"));
        let unlimited = Allocation {
            memory: Size::Infinity,
            ..allocation
        };
        let only_counter = CounterDelta {
            oom_kill: 3,
            ..CounterDelta::default()
        };
        let events = round_events("a", "n", Timestamp(5), &unlimited, only_counter, &[]);
        assert_eq!((events[0].count, events[0].limit.clone()), (3, None));
        // Reclaim above the soft limit names it, where there is one.
        let high = CounterDelta {
            high: 4,
            ..CounterDelta::default()
        };
        let soft = Allocation {
            memory_high: Size::Bytes(6 << 30),
            ..Allocation::default()
        };
        let events = round_events("a", "n", Timestamp(5), &soft, high, &[]);
        assert_eq!(events[0].kind, EventKind::MemoryHigh);
        assert_eq!(
            (events[0].count, events[0].limit.as_deref()),
            (4, Some("6G"))
        );
        let events = round_events("a", "n", Timestamp(5), &Allocation::default(), high, &[]);
        assert_eq!(events[0].limit, None);
    }

    #[test]
    fn waits_rounded_for_people() {
        assert_eq!(waited(850_000), "850 ms");
        assert_eq!(waited(12_400_000), "12 s");
        assert_eq!(waited(35 * 60 * 1_000_000), "35 min");
        assert_eq!(waited(9_000 * 1_000_000), "2.5 h");
    }

    #[test]
    fn kinds_by_name() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.name()), Some(kind));
        }
        assert_eq!(EventKind::parse("oom"), None);
        assert!(!EventKind::OomKill.merges());
        assert!(EventKind::CpuThrottled.merges());
    }
}
