//! Can a login's timing tell who exists? The same PAM login (through real
//! libpam and the module) for an unknown user, a wrong password, a disabled
//! and a locked user, interleaved so drift hits all alike; each median is
//! compared with the wrong-password one. Run twice: with the default costs,
//! and after a cost change (the config asks for t=4 while every stored hash
//! still has t=2), where a dummy verify at the configured cost would give
//! unknown users away.

use std::path::Path;
use std::time::{Duration, Instant};

use libdiycloud::config::Config;
use libdiycloud::hashing::Hasher;
use libdiycloud::model::{Allocation, FailureState, Timestamp, Username};
use libdiycloud::store::{NewUser, Store, UserChanges};

use crate::pam_client::{percentile, Pam};

/// The cases, in the order they are reported; the first is the baseline.
pub const CASES: [&str; 4] = [
    "wrong password",
    "unknown user",
    "disabled user",
    "locked user",
];

/// One scenario's medians, in [`CASES`] order.
pub struct Timing {
    pub scenario: &'static str,
    pub medians: [Duration; 4],
}

impl Timing {
    /// Each case's median over the wrong-password median.
    pub fn ratios(&self) -> [f64; 4] {
        let base = self.medians[0].as_secs_f64();
        self.medians.map(|m| m.as_secs_f64() / base)
    }

    pub fn report(&self) -> String {
        let ratios = self.ratios();
        let parts: Vec<String> = CASES
            .iter()
            .zip(self.medians.iter().zip(ratios))
            .map(|(case, (m, r))| format!("{case} {:.2} ms ({r:.3})", m.as_secs_f64() * 1e3))
            .collect();
        format!("{}: {}", self.scenario, parts.join(", "))
    }
}

/// Runs both scenarios with `rounds` logins per case, the module at `module`.
pub fn measure(module: &Path, rounds: usize) -> Vec<Timing> {
    vec![
        scenario(module, rounds, "default costs (t=2)", ""),
        scenario(
            module,
            rounds,
            "after a cost change (config t=4, stored hashes t=2)",
            "[password]\niterations = 4\n",
        ),
    ]
}

fn scenario(module: &Path, rounds: usize, name: &'static str, config_text: &str) -> Timing {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("diycloud.db");
    let config_path = dir.path().join("diycloud.toml");
    std::fs::write(&config_path, config_text).expect("config");
    let config = Config::parse(config_text).expect("config parses");
    // Every stored hash has the default cost, as before a cost change.
    let hasher = Hasher::new(Config::default().hash).expect("hasher");
    let (mut store, _) = Store::init(&db).expect("init");
    let now = Timestamp::from(std::time::SystemTime::now());
    for name in ["alice", "dave", "lou", "max", "nina"] {
        let hash = hasher.hash("right password").expect("hash");
        let user = NewUser::new(
            Username::parse(name).expect("name"),
            hash,
            Allocation::default(),
        );
        store
            .write(|tx| tx.insert_user(&user, Timestamp(1)))
            .expect("user");
    }
    store
        .write(|tx| {
            tx.update_user(
                "dave",
                &UserChanges {
                    active: Some(false),
                    ..Default::default()
                },
                now,
            )?;
            tx.set_failures(
                "lou",
                &FailureState {
                    count: config.lockout.deny,
                    window_start: Some(now),
                    locked_at: Some(now),
                },
                now,
            )
        })
        .expect("states");
    let confdir = dir.path().join("pam.d");
    std::fs::create_dir(&confdir).expect("confdir");
    std::fs::write(
        confdir.join("timing"),
        format!(
            "auth required {} db={} config={}\n",
            module.display(),
            db.display(),
            config_path.display()
        ),
    )
    .expect("service");
    let pams = [
        Pam::new("timing", "alice", &confdir, "wrong password"),
        Pam::new("timing", "nobody-here", &confdir, "wrong password"),
        Pam::new("timing", "dave", &confdir, "right password"),
        Pam::new("timing", "lou", &confdir, "right password"),
    ];
    let mut samples: [Vec<Duration>; 4] = Default::default();
    for round in 0..rounds {
        for (i, pam) in pams.iter().enumerate() {
            // alice must not lock: clear her failures now and then.
            if i == 0 && round % 3 == 0 {
                store
                    .write(|tx| tx.set_failures("alice", &FailureState::default(), Timestamp(0)))
                    .expect("reset");
            }
            let start = Instant::now();
            let rc = pam.login();
            samples[i].push(start.elapsed());
            assert_ne!(rc, crate::pam_client::PAM_SUCCESS, "{} must fail", CASES[i]);
        }
    }
    Timing {
        scenario: name,
        medians: samples.each_mut().map(|s| percentile(s, 0.5)),
    }
}
