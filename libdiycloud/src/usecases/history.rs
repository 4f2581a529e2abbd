//! The usage history (`[history]`): every active user's usage, sampled by
//! `slicectl serve` into the database, and the charts' series read back.
//!
//! A sample holds a user only while their slice is active (they have a
//! session or processes): an idle user costs no rows.

use crate::config::Config;
use crate::model::gpu::GpuUsage;
use crate::model::gpu::{named_grants, use_key, NodeGpu};
use crate::model::gpu::{user_gpus, UserGpu};
use crate::model::history::{self, Point, Sample};
use crate::model::slice::user_slice;
use crate::model::time::Timestamp;
use crate::model::user::User;
use crate::ports::{AccountPort, GpuPort, PortError, Ports, QuotaPort, SliceLink, SlicePort};
use crate::store::GpuUseUpdate;
use crate::store::{Store, StoreError};
use crate::usecases::apply;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot read usage: {0}")]
    Port(#[from] PortError),
}

/// What one round of sampling did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SampleReport {
    /// Users recorded (their slice was active).
    pub sampled: usize,
    /// Old samples deleted by the retention bounds.
    pub pruned: u64,
    /// Users whose usage could not be read, and why.
    pub errors: Vec<String>,
}

/// Samples every active user's usage at `now` and applies the retention
/// bounds, in one write.
pub fn sample<S: SlicePort, A: AccountPort, Q: QuotaPort, G: GpuPort>(
    ports: &Ports<S, A, Q, G>,
    config: &Config,
    store: &mut Store,
    now: Timestamp,
) -> Result<SampleReport, HistoryError> {
    let users = store.users()?;
    let UsageReading {
        samples,
        errors,
        node_gpus,
        ..
    } = read_usage(ports, config, &users, now)?;
    // Only where the node's GPU figures could be read: a GPU nobody can see
    // is not an idle one.
    let gpu_use = match (&node_gpus, ports.gpu.node()) {
        (Some(figures), Ok(node)) => Some(gpu_use_updates(ports, &users, &node.gpus, figures)),
        _ => None,
    };
    let node = crate::store::node_name();
    let oldest = Timestamp(now.0.saturating_sub(seconds(config.history.keep)));
    let max_rows = config.history.max_rows;
    let (sampled, pruned) = store.write(|tx| {
        if let Some(updates) = &gpu_use {
            tx.record_gpu_use(&node, now, updates)?;
        }
        Ok::<_, StoreError>((
            tx.insert_samples(&samples)?,
            tx.prune_samples(oldest, max_rows)?,
        ))
    })?;
    Ok(SampleReport {
        sampled,
        pruned,
        errors,
    })
}

/// Every GPU granted by name on this node (`node`), and whether its user
/// has a process on it now (`figures`).
fn gpu_use_updates<S, A: AccountPort, Q, G>(
    ports: &Ports<S, A, Q, G>,
    users: &[User],
    node: &[NodeGpu],
    figures: &[GpuUsage],
) -> Vec<GpuUseUpdate> {
    let mut updates = Vec::new();
    for user in users {
        let named = named_grants(&user.allocation.gpus, node);
        if named.is_empty() {
            continue;
        }
        let uid = apply::uid_of(ports, user).ok().flatten();
        for gpu in &named {
            let used = figures.iter().any(|f| {
                let same = match &gpu.uuid {
                    Some(uuid) => f.uuid.eq_ignore_ascii_case(uuid),
                    None => f.index == gpu.index,
                };
                same && uid.is_some() && f.processes.iter().any(|p| p.owner() == uid)
            });
            updates.push(GpuUseUpdate {
                username: user.username.to_string(),
                gpu: use_key(gpu),
                used,
            });
        }
    }
    updates
}

/// What [`read_usage`] read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageReading {
    /// One per user whose slice is active.
    pub samples: Vec<Sample>,
    /// Those users' shares of each GPU they have processes on, where the
    /// node has GPU figures.
    pub gpus: Vec<(String, Vec<UserGpu>)>,
    /// Users whose usage could not be read, and why.
    pub errors: Vec<String>,
    /// The node's GPU figures, where it has them.
    pub node_gpus: Option<Vec<GpuUsage>>,
    /// Why the node's GPU figures could not be read (a broken driver).
    pub gpu_unavailable: Option<String>,
}

/// The usage of those of `users` who are active and whose slice is, read
/// now: their slices over one connection to systemd, their disk from the
/// quotas, their GPU memory from the node's figures (read once). Also the
/// users whose usage could not be read, and why. An error only where
/// systemd cannot be reached at all.
pub fn read_usage<S: SlicePort, A: AccountPort, Q: QuotaPort, G: GpuPort>(
    ports: &Ports<S, A, Q, G>,
    config: &Config,
    users: &[User],
    now: Timestamp,
) -> Result<UsageReading, HistoryError> {
    let mut errors = Vec::new();
    let mut accounts = Vec::new();
    for user in users.iter().filter(|u| u.active) {
        match apply::uid_of(ports, user) {
            Ok(Some(uid)) => accounts.push((user, uid)),
            Ok(None) => {}
            Err(e) => errors.push(format!("{}: {e}", user.username)),
        }
    }
    let slices = ports.slice.block_on(async {
        let link = ports.slice.connect().await?;
        let mut slices = Vec::with_capacity(accounts.len());
        for (_, uid) in &accounts {
            slices.push(link.usage(&user_slice(*uid)).await);
        }
        link.close().await;
        Ok::<_, PortError>(slices)
    })?;
    // A node without GPU figures has none; one whose driver is broken
    // says why, and the rest is read as usual.
    let (gpus, gpu_unavailable) = match ports.gpu.usage() {
        Ok(gpus) => (gpus, None),
        Err(e) => (None, Some(e.to_string())),
    };
    let mut samples = Vec::new();
    let mut shares = Vec::new();
    for ((user, uid), slice) in accounts.iter().zip(slices) {
        let slice = match slice {
            Ok(slice) if slice.active_state == "active" => slice,
            Ok(_) => continue,
            Err(e) => {
                errors.push(format!("{}: {e}", user.username));
                continue;
            }
        };
        let disk: Vec<u64> = apply::disk_usage(ports, config, user)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|d| d.quota.ok().map(|q| q.used_bytes))
            .collect();
        let theirs = gpus.as_ref().map(|node| user_gpus(node, *uid));
        samples.push(Sample {
            username: user.username.to_string(),
            at: now,
            cpu_nsec: slice.cpu_usage_nsec,
            memory_bytes: slice.memory_current,
            tasks: slice.tasks_current,
            disk_bytes: (!disk.is_empty()).then(|| disk.iter().sum()),
            gpu_memory_bytes: theirs
                .as_ref()
                .map(|g| g.iter().map(|g| g.memory_bytes).sum()),
        });
        if let Some(theirs) = theirs.filter(|g| !g.is_empty()) {
            shares.push((user.username.to_string(), theirs));
        }
    }
    Ok(UsageReading {
        samples,
        gpus: shares,
        errors,
        node_gpus: gpus,
        gpu_unavailable,
    })
}

fn seconds(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX)
}

/// The most points a series has: enough for a chart as wide as a screen.
pub const MAX_POINTS: u64 = 300;

/// The points of `user`'s history (the node's, all users added up, where
/// `None`) from `from` to `to`, at most [`MAX_POINTS`].
pub fn series(
    store: &Store,
    config: &Config,
    user: Option<&str>,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<Point>, StoreError> {
    let samples = bucketed(store, config, user, from, to)?;
    Ok(match user {
        Some(_) => history::points(&samples),
        None => history::node_points(&samples),
    })
}

/// Every user's points from `from` to `to`, by user: for the admin's
/// "top users".
pub fn series_of_all(
    store: &Store,
    config: &Config,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<(String, Vec<Point>)>, StoreError> {
    let samples = bucketed(store, config, None, from, to)?;
    Ok(samples
        .chunk_by(|a, b| a.username == b.username)
        .map(|user| (user[0].username.clone(), history::points(user)))
        .collect())
}

/// The samples of `user` (everyone's: `None`) from `from` to `to`, in
/// buckets wide enough for at most [`MAX_POINTS`] points.
fn bucketed(
    store: &Store,
    config: &Config,
    user: Option<&str>,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<Sample>, StoreError> {
    let range = u64::try_from(to.0.saturating_sub(from.0)).unwrap_or(0);
    let bucket = history::bucket(range, config.history.interval, MAX_POINTS);
    store.samples(user, from, to, bucket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::history::Counter;
    use crate::model::{Allocation, Username};
    use crate::store::{NewUser, UserChanges};
    use crate::testing::{FakeAccounts, FakeGpus, FakeQuotas, FakeSlice};

    fn store_with(names: &[&str]) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = Store::init(&dir.path().join("d.db")).unwrap();
        store
            .write(|tx| {
                for name in names {
                    let new = NewUser::new(
                        Username::parse(name).unwrap(),
                        "$argon2id$fake".into(),
                        Allocation::default(),
                    );
                    tx.insert_user(&new, Timestamp(1))?;
                }
                Ok::<_, StoreError>(())
            })
            .unwrap();
        (dir, store)
    }

    fn ports(
        uids: Vec<(&'static str, u32)>,
    ) -> Ports<FakeSlice, FakeAccounts, FakeQuotas, FakeGpus> {
        Ports {
            accounts: FakeAccounts::with(&uids),
            ..Ports::default()
        }
    }

    #[test]
    fn active_users_with_an_account_are_sampled_over_one_connection() {
        let (_dir, mut store) = store_with(&["alice", "bob", "carl", "dora"]);
        store
            .write(|tx| {
                tx.update_user(
                    "carl",
                    &UserChanges {
                        active: Some(false),
                        ..UserChanges::default()
                    },
                    Timestamp(2),
                )
            })
            .unwrap();
        // dora has no system account.
        let ports = ports(vec![("alice", 1001), ("bob", 1002), ("carl", 1003)]);
        let report = sample(&ports, &Config::default(), &mut store, Timestamp(100)).unwrap();
        assert_eq!(report.sampled, 2);
        assert_eq!(report.errors, Vec::<String>::new());
        let journal = ports.slice.journal.borrow().clone();
        assert_eq!(
            journal.iter().filter(|l| l.as_str() == "connected").count(),
            1
        );
        assert!(journal.contains(&"usage user-1001.slice".to_string()));
        assert!(!journal.contains(&"usage user-1003.slice".to_string()));
        let alice = store
            .samples(Some("alice"), Timestamp(0), Timestamp(200), 1)
            .unwrap();
        assert_eq!(alice.len(), 1);
        assert_eq!(alice[0].memory_bytes, Some(1 << 20));
        assert_eq!(alice[0].disk_bytes, None);
    }

    #[test]
    fn a_broken_gpu_driver_leaves_the_other_figures_and_says_why() {
        let (_dir, store) = store_with(&["alice"]);
        let mut ports = ports(vec![("alice", 1001)]);
        ports.gpu.usage_error = Some("NVML: a libloading error occurred".into());
        let users = store.users().unwrap();
        let reading = read_usage(&ports, &Config::default(), &users, Timestamp(100)).unwrap();
        assert_eq!(reading.samples.len(), 1);
        assert_eq!(reading.samples[0].memory_bytes, Some(1 << 20));
        assert_eq!(reading.samples[0].gpu_memory_bytes, None);
        assert_eq!(
            reading.gpu_unavailable.as_deref(),
            Some("NVML: a libloading error occurred")
        );
        ports.gpu.usage_error = None;
        let reading = read_usage(&ports, &Config::default(), &users, Timestamp(100)).unwrap();
        assert_eq!(reading.gpu_unavailable, None);
    }

    #[test]
    fn gpu_memory_is_summed_per_user_and_unknown_without_gpu_figures() {
        use crate::model::gpu::{GpuProcess, GpuUsage};
        let (_dir, mut store) = store_with(&["alice", "bob"]);
        let mut ports = ports(vec![("alice", 1001), ("bob", 1002)]);
        let gpu = |index, processes: Vec<(u32, u64)>| GpuUsage {
            index,
            uuid: format!("GPU-{index}"),
            utilization_percent: Some(50),
            memory_used_bytes: None,
            memory_total_bytes: None,
            processes: processes
                .into_iter()
                .map(|(uid, bytes)| GpuProcess {
                    pid: 1,
                    uid: Some(uid),
                    memory_bytes: Some(bytes),
                    ..GpuProcess::default()
                })
                .collect(),
        };
        ports.gpu.usage = Some(vec![
            gpu(0, vec![(1001, 100), (1002, 7)]),
            gpu(1, vec![(1001, 50)]),
        ]);
        sample(&ports, &Config::default(), &mut store, Timestamp(100)).unwrap();
        let all = store
            .samples(None, Timestamp(0), Timestamp(200), 1)
            .unwrap();
        let gpu_of = |name: &str| {
            all.iter()
                .find(|s| s.username == name)
                .unwrap()
                .gpu_memory_bytes
        };
        assert_eq!(gpu_of("alice"), Some(150));
        assert_eq!(gpu_of("bob"), Some(7));
        // A node without GPU figures: unknown, not zero.
        ports.gpu.usage = None;
        sample(&ports, &Config::default(), &mut store, Timestamp(101)).unwrap();
        let later = store
            .samples(Some("alice"), Timestamp(101), Timestamp(101), 1)
            .unwrap();
        assert_eq!(later[0].gpu_memory_bytes, None);
    }

    #[test]
    fn gpus_granted_by_name_are_followed_and_flagged_when_idle() {
        use crate::model::gpu::NodeGpu;
        use crate::model::gpu::{GpuProcess, GpuUsage};
        use crate::usecases::admin::idle_gpus;
        let (_dir, mut store) = store_with(&["alice", "bob", "carl"]);
        let grant = |store: &mut Store, name: &str, gpus: &str| {
            let changes = UserChanges {
                limits: crate::model::LimitChanges {
                    gpus: Some(gpus.parse().unwrap()),
                    ..Default::default()
                },
                ..UserChanges::default()
            };
            store
                .write(|tx| tx.update_user(name, &changes, Timestamp(2)))
                .unwrap();
        };
        grant(&mut store, "alice", "0");
        grant(&mut store, "bob", "1");
        grant(&mut store, "carl", "all");
        let mut ports = ports(vec![("alice", 1001), ("bob", 1002), ("carl", 1003)]);
        ports.gpu.node.gpus = (0..2)
            .map(|index| NodeGpu {
                index,
                uuid: Some(format!("GPU-{index}")),
                minor: index,
                migs: Vec::new(),
            })
            .collect();
        // bob's process runs on GPU 1, in his slice though setuid root.
        let figures = |busy: bool| {
            (0..2)
                .map(|index| GpuUsage {
                    index,
                    uuid: format!("GPU-{index}"),
                    utilization_percent: None,
                    memory_used_bytes: None,
                    memory_total_bytes: None,
                    processes: if busy && index == 1 {
                        vec![GpuProcess {
                            pid: 9,
                            uid: Some(0),
                            slice_uid: Some(1002),
                            ..GpuProcess::default()
                        }]
                    } else {
                        Vec::new()
                    },
                })
                .collect::<Vec<_>>()
        };
        ports.gpu.usage = Some(figures(true));
        sample(&ports, &Config::default(), &mut store, Timestamp(1000)).unwrap();
        ports.gpu.usage = Some(figures(false));
        sample(&ports, &Config::default(), &mut store, Timestamp(5000)).unwrap();
        let uses = store.gpu_use(None).unwrap();
        assert_eq!(uses.len(), 2, "carl's 'all' is not followed: {uses:?}");
        let node = crate::store::node_name();
        let alice = store.gpu_use(Some("alice")).unwrap();
        let flagged = idle_gpus(&alice, &node, Timestamp(1000 + 4 * 3600), 4 * 3600);
        assert_eq!(flagged.len(), 1, "granted at 1000, never used");
        assert_eq!(
            (flagged[0].gpu.as_str(), flagged[0].last_used.clone()),
            ("GPU-0", None)
        );
        let bob = store.gpu_use(Some("bob")).unwrap();
        assert_eq!(bob[0].last_used, Some(Timestamp(1000)));
        assert!(idle_gpus(&bob, &node, Timestamp(1000 + 4 * 3600 - 1), 4 * 3600).is_empty());
        assert_eq!(
            idle_gpus(&bob, &node, Timestamp(1000 + 4 * 3600), 4 * 3600).len(),
            1
        );
        assert!(
            idle_gpus(&bob, &node, Timestamp(99_999), 0).is_empty(),
            "0: never"
        );
        assert!(idle_gpus(&bob, "elsewhere", Timestamp(99_999), 60).is_empty());
        // Without GPU figures nothing is recorded: not seen is not idle.
        ports.gpu.usage = None;
        grant(&mut store, "alice", "none");
        sample(&ports, &Config::default(), &mut store, Timestamp(9000)).unwrap();
        assert_eq!(store.gpu_use(Some("alice")).unwrap().len(), 1);
        // With them, alice's grant taken away takes her row.
        ports.gpu.usage = Some(figures(false));
        sample(&ports, &Config::default(), &mut store, Timestamp(9100)).unwrap();
        assert!(store.gpu_use(Some("alice")).unwrap().is_empty());
    }

    #[test]
    fn no_systemd_is_an_error_and_records_nothing() {
        let (_dir, mut store) = store_with(&["alice"]);
        let mut ports = ports(vec![("alice", 1001)]);
        ports.slice.refuse_connect = true;
        assert!(matches!(
            sample(&ports, &Config::default(), &mut store, Timestamp(100)),
            Err(HistoryError::Port(_))
        ));
        assert_eq!(store.sample_count().unwrap(), 0);
    }

    #[test]
    fn retention_removes_samples_by_age_and_by_count() {
        let (_dir, mut store) = store_with(&["alice", "bob"]);
        let ports = ports(vec![("alice", 1001), ("bob", 1002)]);
        let mut config = Config::default();
        config.history.keep = 100;
        config.history.max_rows = 5;
        for at in [1000, 1010, 1020] {
            sample(&ports, &config, &mut store, Timestamp(at)).unwrap();
        }
        // 6 samples, 5 at most: the oldest went.
        assert_eq!(store.sample_count().unwrap(), 5);
        let all = store
            .samples(None, Timestamp(0), Timestamp(9999), 1)
            .unwrap();
        assert_eq!(all.iter().filter(|s| s.at == Timestamp(1000)).count(), 1);
        // 200 s later, all but the new round are older than `keep`.
        let report = sample(&ports, &config, &mut store, Timestamp(1220)).unwrap();
        assert_eq!(report.pruned, 5);
        let left = store
            .samples(None, Timestamp(0), Timestamp(9999), 1)
            .unwrap();
        assert!(left.iter().all(|s| s.at == Timestamp(1220)), "{left:?}");
        assert_eq!(left.len(), 2);
    }

    #[test]
    fn a_deleted_users_history_goes_with_them() {
        let (_dir, mut store) = store_with(&["alice"]);
        let ports = ports(vec![("alice", 1001)]);
        sample(&ports, &Config::default(), &mut store, Timestamp(100)).unwrap();
        assert_eq!(store.sample_count().unwrap(), 1);
        store.write(|tx| tx.delete_user("alice")).unwrap();
        assert_eq!(store.sample_count().unwrap(), 0);
    }

    #[test]
    fn series_buckets_a_long_range_and_adds_up_the_node() {
        let (_dir, mut store) = store_with(&["alice", "bob"]);
        let ports = ports(vec![("alice", 1001), ("bob", 1002)]);
        let mut config = Config::default();
        config.history.interval = 1;
        for at in 0..1000 {
            sample(&ports, &config, &mut store, Timestamp(10_000 + at)).unwrap();
        }
        let alice = series(
            &store,
            &config,
            Some("alice"),
            Timestamp(10_000),
            Timestamp(11_000),
        )
        .unwrap();
        assert!(
            alice.len() <= MAX_POINTS as usize && alice.len() > 100,
            "{}",
            alice.len()
        );
        let node = series(&store, &config, None, Timestamp(10_000), Timestamp(11_000)).unwrap();
        assert_eq!(node.len(), alice.len());
        assert_eq!(node[3].memory_bytes, Some(2 << 20));
    }

    #[test]
    fn counters_start_at_zero_and_count() {
        let (_dir, mut store) = store_with(&[]);
        assert_eq!(store.counter(Counter::Lockout).unwrap(), 0);
        store
            .write(|tx| {
                tx.count(Counter::Lockout)?;
                tx.count(Counter::Lockout)
            })
            .unwrap();
        assert_eq!(store.counter(Counter::Lockout).unwrap(), 2);
        assert_eq!(store.counter(Counter::LoginSuccess).unwrap(), 0);
    }
}
