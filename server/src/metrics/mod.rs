//! `/metrics`: the node's users and their usage in Prometheus's text format
//! (version 0.0.4), read live at each scrape.
//!
//! Two levels. The per-user series (who is an admin, who is locked or
//! disabled, each user's usage) go only to a scraper with a credential: the
//! token of `[api] metrics_token_file` or an admin's session; or, with the
//! explicit opt-out `[api] metrics_public`, to every process on the node
//! that asks directly. Any other local process gets the rest, which names
//! no user ([`aggregates_only`], in `withheld.rs`). The shipped nginx site
//! does not pass it on.

mod withheld;

use std::fmt::Write;

use libdiycloud::config::Config;
use libdiycloud::model::events::EventKind;
use libdiycloud::model::gpu::UserGpu;
use libdiycloud::model::history::{Counter, Sample};
use libdiycloud::model::time::Timestamp;
use libdiycloud::model::user::{AccountState, Pending, User};
use libdiycloud::store::{Store, StoreError};
use libdiycloud::usecases::history::read_usage;
use libdiycloud::usecases::watch::EventTotal;

pub use withheld::{aggregates_only, per_user_family};

/// The figures of one scrape.
pub struct Scrape {
    pub users: Vec<User>,
    /// `None`: usage could not be read (systemd not reachable).
    pub usage: Option<Vec<Sample>>,
    /// Each user's share of each GPU they have processes on.
    pub gpus: Vec<(String, Vec<UserGpu>)>,
    /// Why the node's GPU figures could not be read (a broken driver).
    pub gpu_unavailable: Option<String>,
    pub counters: Vec<(Counter, u64)>,
    /// The watcher's limit events since the server started.
    pub limit_totals: crate::LimitTotals,
}

/// Reads what a scrape shows.
pub fn scrape(
    store: &Store,
    config: &Config,
    ports: &libdiycloud::system::SystemPorts,
    now: Timestamp,
) -> Result<Scrape, StoreError> {
    let users = store.users()?;
    let (usage, gpus, gpu_unavailable) = match read_usage(ports, config, &users, now) {
        Ok(reading) => (Some(reading.samples), reading.gpus, reading.gpu_unavailable),
        Err(_) => (None, Vec::new(), None),
    };
    let counters = Counter::ALL
        .iter()
        .map(|c| Ok((*c, store.counter(*c)?)))
        .collect::<Result<_, StoreError>>()?;
    Ok(Scrape {
        users,
        usage,
        gpus,
        gpu_unavailable,
        counters,
        limit_totals: crate::LimitTotals::new(),
    })
}

/// Whether the node's GPU figures could be read (or it has no GPUs), and
/// where not, why (a broken driver): the other series are complete.
fn gpu_up(out: &mut String, unavailable: Option<&str>) {
    family(
        out,
        "diycloud_gpu_usage_up",
        "gauge",
        "1 when the node's GPU figures could be read at this scrape (or it has no GPUs); 0 when its driver is broken.",
    );
    let _ = writeln!(
        out,
        "diycloud_gpu_usage_up {}",
        u8::from(unavailable.is_none())
    );
    if let Some(why) = unavailable {
        family(
            out,
            "diycloud_gpu_unavailable_info",
            "gauge",
            "Why the node's GPU figures could not be read at this scrape.",
        );
        let _ = writeln!(
            out,
            "diycloud_gpu_unavailable_info{{reason=\"{}\"}} 1",
            label(why)
        );
    }
}

/// A label value as the format wants it.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The text of a scrape.
pub fn render(scrape: &Scrape, config: &Config, now: Timestamp) -> String {
    let mut out = String::new();
    user_counts(&mut out, scrape, config, now);
    family(
        &mut out,
        "diycloud_user_info",
        "gauge",
        "One series per user of the database: role and state.",
    );
    for user in &scrape.users {
        let state = user.state(&config.lockout, now).as_str();
        let _ = writeln!(
            out,
            "diycloud_user_info{{user=\"{}\",role=\"{}\",state=\"{}\"}} 1",
            label(user.username.as_str()),
            label(&user.role.to_string()),
            label(state)
        );
    }

    family(
        &mut out,
        "diycloud_usage_up",
        "gauge",
        "1 when the users' usage could be read from systemd at this scrape.",
    );
    let _ = writeln!(
        out,
        "diycloud_usage_up {}",
        u8::from(scrape.usage.is_some())
    );
    if scrape.usage.is_some() {
        gpu_up(&mut out, scrape.gpu_unavailable.as_deref());
    }
    let usage = scrape.usage.as_deref().unwrap_or_default();
    type Figure = fn(&Sample) -> Option<f64>;
    let figures: [(&str, &str, &str, Figure); 5] = [
        (
            "diycloud_user_cpu_seconds_total",
            "counter",
            "CPU time of the user's slice since it started.",
            |s| s.cpu_nsec.map(|n| n as f64 / 1e9),
        ),
        (
            "diycloud_user_memory_bytes",
            "gauge",
            "Memory the user's slice holds.",
            |s| s.memory_bytes.map(|v| v as f64),
        ),
        (
            "diycloud_user_tasks",
            "gauge",
            "Tasks (processes and threads) in the user's slice.",
            |s| s.tasks.map(|v| v as f64),
        ),
        (
            "diycloud_user_disk_bytes",
            "gauge",
            "Disk the user uses on the quota filesystems, summed.",
            |s| s.disk_bytes.map(|v| v as f64),
        ),
        (
            "diycloud_user_gpu_memory_bytes",
            "gauge",
            "GPU memory the user's processes hold, summed over GPUs.",
            |s| s.gpu_memory_bytes.map(|v| v as f64),
        ),
    ];
    for (name, kind, help, figure) in figures {
        family(&mut out, name, kind, help);
        for sample in usage {
            if let Some(value) = figure(sample) {
                let _ = writeln!(
                    out,
                    "{name}{{user=\"{}\"}} {value}",
                    label(&sample.username)
                );
            }
        }
    }

    type GpuFigure = fn(&UserGpu) -> Option<f64>;
    let gpu_figures: [(&str, &str, GpuFigure); 3] = [
        (
            "diycloud_user_gpu_processes",
            "Processes of the user's on one GPU (in their slice, or theirs outside every user slice).",
            |g| Some(g.processes as f64),
        ),
        (
            "diycloud_user_gpu_device_memory_bytes",
            "GPU memory the user's processes hold on one GPU.",
            |g| Some(g.memory_bytes as f64),
        ),
        (
            "diycloud_user_gpu_utilization_percent",
            "How busy the user's processes keep one GPU, from the driver's per-process samples.",
            |g| g.utilization_percent.map(f64::from),
        ),
    ];
    for (name, help, figure) in gpu_figures {
        family(&mut out, name, "gauge", help);
        for (user, gpus) in &scrape.gpus {
            for gpu in gpus {
                if let Some(value) = figure(gpu) {
                    let _ = writeln!(
                        out,
                        "{name}{{user=\"{}\",gpu=\"{}\",uuid=\"{}\"}} {value}",
                        label(user),
                        gpu.index,
                        label(&gpu.uuid)
                    );
                }
            }
        }
    }

    family(
        &mut out,
        "diycloud_logins_total",
        "counter",
        "Password checks of diycloud users by result (SSH, su, the API, the portal: every front door).",
    );
    for (counter, value) in &scrape.counters {
        match counter {
            Counter::LoginSuccess => {
                let _ = writeln!(out, "diycloud_logins_total{{result=\"success\"}} {value}");
            }
            Counter::LoginFailure => {
                let _ = writeln!(out, "diycloud_logins_total{{result=\"failure\"}} {value}");
            }
            Counter::Lockout => {}
        }
    }
    family(
        &mut out,
        "diycloud_lockouts_total",
        "counter",
        "Accounts locked by failed logins.",
    );
    for (counter, value) in &scrape.counters {
        if *counter == Counter::Lockout {
            let _ = writeln!(out, "diycloud_lockouts_total {value}");
        }
    }
    limit_events(&mut out, &scrape.limit_totals);
    out
}

/// How many users are in each state: what a scraper without a credential
/// learns of the users.
fn user_counts(out: &mut String, scrape: &Scrape, config: &Config, now: Timestamp) {
    family(
        out,
        "diycloud_users",
        "gauge",
        "Users of the database by state.",
    );
    for state in [
        AccountState::Active,
        AccountState::Disabled,
        AccountState::Locked,
        AccountState::Expired,
        AccountState::Unfinished(Pending::Add),
        AccountState::Unfinished(Pending::Del),
    ] {
        let count = scrape
            .users
            .iter()
            .filter(|u| u.state(&config.lockout, now) == state)
            .count();
        let _ = writeln!(
            out,
            "diycloud_users{{state=\"{}\"}} {count}",
            label(state.as_str())
        );
    }
}

/// The limit events' counters: every user with any, since the server
/// started (a restart starts them over, as Prometheus expects of counters).
fn limit_events(out: &mut String, totals: &crate::LimitTotals) {
    type Figure = fn(&EventTotal) -> f64;
    let families: [(&str, EventKind, &str, Figure); 4] = [
        (
            "diycloud_user_oom_kills_total",
            EventKind::OomKill,
            "Processes of the user's slice killed for memory over MemoryMax.",
            |t| t.count as f64,
        ),
        (
            "diycloud_user_memory_high_total",
            EventKind::MemoryHigh,
            "Times the user's slice went over MemoryHigh and was reclaimed.",
            |t| t.count as f64,
        ),
        (
            "diycloud_user_cpu_throttled_periods_total",
            EventKind::CpuThrottled,
            "CPU periods in which the user's slice ran out of its quota.",
            |t| t.count as f64,
        ),
        (
            "diycloud_user_cpu_throttled_seconds_total",
            EventKind::CpuThrottled,
            "Time the user's slice waited for CPU over its quota.",
            |t| t.throttled_usec as f64 / 1e6,
        ),
    ];
    for (name, kind, help, figure) in families {
        family(out, name, "counter", help);
        for ((user, _), total) in totals.iter().filter(|((_, k), _)| *k == kind) {
            let _ = writeln!(out, "{name}{{user=\"{}\"}} {}", label(user), figure(total));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_gpu_driver_is_shown_and_the_rest_kept() {
        let config = Config::default();
        let sample = Sample {
            username: "alice".into(),
            at: Timestamp(0),
            cpu_nsec: Some(2_000_000_000),
            memory_bytes: Some(1 << 20),
            tasks: Some(3),
            disk_bytes: None,
            gpu_memory_bytes: None,
        };
        let scrape = |gpu_unavailable: Option<&str>| Scrape {
            users: Vec::new(),
            usage: Some(vec![sample.clone()]),
            gpus: Vec::new(),
            gpu_unavailable: gpu_unavailable.map(str::to_owned),
            counters: Vec::new(),
            limit_totals: crate::LimitTotals::new(),
        };
        let text = render(
            &scrape(Some("NVML: a libloading error occurred")),
            &config,
            Timestamp(0),
        );
        assert!(text.contains("diycloud_gpu_usage_up 0\n"), "{text}");
        assert!(
            text.contains(
                "diycloud_gpu_unavailable_info{reason=\"NVML: a libloading error occurred\"} 1\n"
            ),
            "{text}"
        );
        assert!(text.contains("diycloud_usage_up 1\n"), "{text}");
        assert!(
            text.contains("diycloud_user_memory_bytes{user=\"alice\"} 1048576\n"),
            "{text}"
        );
        let text = render(&scrape(None), &config, Timestamp(0));
        assert!(text.contains("diycloud_gpu_usage_up 1\n"), "{text}");
        assert!(!text.contains("diycloud_gpu_unavailable_info"), "{text}");
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn a_scrape_without_usage_says_so_and_still_lists_users() {
        let config = Config::default();
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = Store::init(&dir.path().join("d.db")).unwrap();
        store
            .write(|tx| {
                tx.insert_user(
                    &libdiycloud::store::NewUser::new(
                        libdiycloud::model::Username::parse("alice").unwrap(),
                        "$argon2id$x".into(),
                        config.defaults.clone(),
                    ),
                    Timestamp(0),
                )
            })
            .unwrap();
        let text = render(
            &Scrape {
                users: store.users().unwrap(),
                usage: None,
                gpu_unavailable: None,
                gpus: vec![(
                    "alice".into(),
                    vec![UserGpu {
                        index: 1,
                        uuid: "GPU-1".into(),
                        processes: 2,
                        memory_bytes: 1 << 30,
                        utilization_percent: Some(75),
                        pids: Vec::new(),
                    }],
                )],
                counters: vec![(Counter::LoginSuccess, 3), (Counter::Lockout, 1)],
                limit_totals: [(
                    ("alice".to_string(), EventKind::OomKill),
                    EventTotal {
                        count: 2,
                        throttled_usec: 0,
                    },
                )]
                .into(),
            },
            &config,
            Timestamp(0),
        );
        assert!(text.contains("diycloud_usage_up 0\n"), "{text}");
        assert!(
            text.contains("diycloud_user_info{user=\"alice\",role=\"user\",state=\"active\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("diycloud_logins_total{result=\"success\"} 3\n"));
        assert!(text.contains("diycloud_lockouts_total 1\n"));
        assert!(
            text.contains("diycloud_user_oom_kills_total{user=\"alice\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE diycloud_user_cpu_throttled_seconds_total counter\n"));
        assert!(
            text.contains(
                "diycloud_user_gpu_utilization_percent{user=\"alice\",gpu=\"1\",uuid=\"GPU-1\"} 75\n"
            ),
            "{text}"
        );
    }
}
