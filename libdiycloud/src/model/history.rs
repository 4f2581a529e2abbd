//! Usage history as charts show it: samples in, points out.

use serde::Serialize;

use super::time::Timestamp;

/// One user's figures at one time, as sampled (`None`: not known then).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sample {
    pub username: String,
    pub at: Timestamp,
    /// CPU time of the user's slice since it started: a counter, which
    /// starts over when the slice does (at a new first login).
    pub cpu_nsec: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub tasks: Option<u64>,
    pub disk_bytes: Option<u64>,
    pub gpu_memory_bytes: Option<u64>,
}

/// One point of a chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Point {
    /// Unix seconds.
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub at: Timestamp,
    /// CPU time so far, in seconds (the counter as sampled).
    pub cpu_seconds: Option<f64>,
    /// Cores busy on average since the previous point; `None` at the first
    /// point, after a gap in the counter, and where it started over.
    pub cpu_cores: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub tasks: Option<u64>,
    pub disk_bytes: Option<u64>,
    pub gpu_memory_bytes: Option<u64>,
}

/// The points of one user's samples, in time order.
pub fn points(samples: &[Sample]) -> Vec<Point> {
    let mut previous: Option<&Sample> = None;
    samples
        .iter()
        .map(|s| {
            let cpu_cores = previous.and_then(|p| cores_between(p, s));
            previous = Some(s);
            Point {
                at: s.at,
                cpu_seconds: s.cpu_nsec.map(|n| n as f64 / 1e9),
                cpu_cores,
                memory_bytes: s.memory_bytes,
                tasks: s.tasks,
                disk_bytes: s.disk_bytes,
                gpu_memory_bytes: s.gpu_memory_bytes,
            }
        })
        .collect()
}

/// Cores busy between two samples of one slice's CPU counter.
fn cores_between(before: &Sample, after: &Sample) -> Option<f64> {
    let seconds = after.at.0.checked_sub(before.at.0).filter(|s| *s > 0)?;
    // Lower than before: the slice started over.
    let nsec = after.cpu_nsec?.checked_sub(before.cpu_nsec?)?;
    Some(nsec as f64 / 1e9 / seconds as f64)
}

/// The node's points: every user's, added up per time. A figure is known
/// at a time when any user's is; `cpu_seconds` adds up the counters.
/// `samples` in the order [`crate::store::Store::samples`] gives them.
pub fn node_points(samples: &[Sample]) -> Vec<Point> {
    let mut by_time: std::collections::BTreeMap<i64, Point> = std::collections::BTreeMap::new();
    for user in samples.chunk_by(|a, b| a.username == b.username) {
        for p in points(user) {
            let sum = by_time.entry(p.at.0).or_insert(Point {
                at: p.at,
                cpu_seconds: None,
                cpu_cores: None,
                memory_bytes: None,
                tasks: None,
                disk_bytes: None,
                gpu_memory_bytes: None,
            });
            add_f(&mut sum.cpu_seconds, p.cpu_seconds);
            add_f(&mut sum.cpu_cores, p.cpu_cores);
            add(&mut sum.memory_bytes, p.memory_bytes);
            add(&mut sum.tasks, p.tasks);
            add(&mut sum.disk_bytes, p.disk_bytes);
            add(&mut sum.gpu_memory_bytes, p.gpu_memory_bytes);
        }
    }
    by_time.into_values().collect()
}

fn add(sum: &mut Option<u64>, value: Option<u64>) {
    if let Some(v) = value {
        *sum = Some(sum.unwrap_or(0).saturating_add(v));
    }
}

fn add_f(sum: &mut Option<f64>, value: Option<f64>) {
    if let Some(v) = value {
        *sum = Some(sum.unwrap_or(0.0) + v);
    }
}

/// The seconds one point stands for when `range` seconds are shown in at
/// most `max_points` points of samples taken every `interval` seconds.
pub fn bucket(range: u64, interval: u64, max_points: u64) -> u64 {
    range.div_ceil(max_points.max(1)).max(interval).max(1)
}

/// What `/metrics` counts besides usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// A right password of an account that may log in.
    LoginSuccess,
    /// A wrong password (counted toward the lockout), at a login or a
    /// password change.
    LoginFailure,
    /// A failure that locked an account.
    Lockout,
}

impl Counter {
    pub const ALL: [Counter; 3] = [
        Counter::LoginSuccess,
        Counter::LoginFailure,
        Counter::Lockout,
    ];

    /// The name in the database.
    pub fn name(self) -> &'static str {
        match self {
            Counter::LoginSuccess => "logins_success",
            Counter::LoginFailure => "logins_failure",
            Counter::Lockout => "lockouts",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(user: &str, at: i64, cpu_sec: Option<u64>, memory: u64) -> Sample {
        Sample {
            username: user.into(),
            at: Timestamp(at),
            cpu_nsec: cpu_sec.map(|s| s * 1_000_000_000),
            memory_bytes: Some(memory),
            tasks: Some(1),
            disk_bytes: None,
            gpu_memory_bytes: None,
        }
    }

    #[test]
    fn cores_come_from_the_counter_between_points() {
        let p = points(&[
            sample("a", 100, Some(10), 1),
            sample("a", 110, Some(25), 1),
            sample("a", 120, None, 1),
            sample("a", 130, Some(40), 1),
            // Started over (a new first login): no rate, not a negative one.
            sample("a", 140, Some(2), 1),
            sample("a", 150, Some(7), 1),
        ]);
        let cores: Vec<_> = p.iter().map(|p| p.cpu_cores).collect();
        assert_eq!(cores, [None, Some(1.5), None, None, None, Some(0.5)]);
        assert_eq!(p[1].cpu_seconds, Some(25.0));
    }

    #[test]
    fn the_node_adds_up_its_users_per_time() {
        let node = node_points(&[
            sample("a", 100, Some(0), 100),
            sample("a", 110, Some(10), 300),
            sample("b", 110, Some(5), 50),
            sample("b", 120, Some(25), 50),
        ]);
        assert_eq!(node.len(), 3);
        assert_eq!(node[0].memory_bytes, Some(100));
        assert_eq!(node[1].memory_bytes, Some(350));
        assert_eq!(node[1].cpu_cores, Some(1.0));
        assert_eq!(node[1].cpu_seconds, Some(15.0));
        assert_eq!(node[2].cpu_cores, Some(2.0));
        assert_eq!(node[2].disk_bytes, None);
    }

    #[test]
    fn a_bucket_is_never_finer_than_the_interval() {
        assert_eq!(bucket(3600, 60, 300), 60);
        assert_eq!(bucket(7 * 86400, 60, 300), 2016);
        assert_eq!(bucket(10, 1, 300), 1);
        assert_eq!(bucket(0, 0, 0), 1);
    }
}
