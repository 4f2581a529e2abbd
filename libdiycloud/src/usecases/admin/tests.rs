//! The admin use cases on a real SQLite store with fake ports, the node's
//! accounts among them (root and a service account exist; `useradd` and
//! the rest are recorded, not run). The same account paths run for real,
//! as root, in `slicectl/tests/system_accounts.rs` and the VM tier.

use super::*;
use crate::model::password::HashParams;
use crate::model::{Cpu, Size};
use crate::testing::{FakeAccounts, FakeGpus, FakeQuotas, FakeSlice};
use crate::usecases::apply::StepOutcome;
use crate::usecases::auth::LoginOutcome;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    config: Config,
    ports: Ports<FakeSlice, FakeAccounts, FakeQuotas, FakeGpus>,
}

const NOW: Timestamp = Timestamp(1_800_000_000);

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::init(&dir.path().join("d.db")).unwrap();
    let config = Config {
        hash: HashParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
        ..Config::default()
    };
    Fixture {
        _dir: dir,
        store,
        config,
        ports: Ports {
            accounts: FakeAccounts::with(&[("root", 0), ("daemon", 1)]),
            ..Ports::default()
        },
    }
}

impl Fixture {
    fn admin(&mut self) -> Admin<'_, FakeSlice, FakeAccounts, FakeQuotas, FakeGpus> {
        Admin::new(&mut self.store, &self.config, &self.ports, "tester", NOW)
    }

    fn add(&mut self, name: &str, password: &str) -> Result<Added, AdminError> {
        let request = linked(name);
        let password = password.as_bytes().to_vec();
        self.admin()
            .add(&request, &mut || Ok(Zeroizing::new(password.clone())))
    }

    fn login(&mut self, name: &str, password: &str) -> LoginOutcome {
        Authenticator::new(&mut self.store, &self.config, "t")
            .unwrap()
            .login(name, password.as_bytes(), NOW)
            .unwrap()
    }
}

/// A record only: no system account is made (none exists for these names).
fn linked(name: &str) -> AddUser {
    AddUser {
        name: Username::parse(name).unwrap(),
        role: Role::User,
        email: None,
        full_name: None,
        expires: None,
        limits: LimitChanges::default(),
        system_account: SystemAccount::Link {
            allow_service_account: false,
        },
    }
}

/// A node with one GPU, index 0.
fn one_gpu_node() -> crate::model::gpu::GpuNode {
    use crate::model::gpu::{GpuNode, NodeGpu};
    GpuNode {
        gpus: vec![NodeGpu {
            index: 0,
            uuid: Some("GPU-82efa4d8-2419-4b59-e2b6-52028b659ad4".into()),
            minor: 0,
            migs: vec![],
        }],
        ..GpuNode::default()
    }
}

fn never_asked() -> impl FnMut() -> Result<Zeroizing<Vec<u8>>, AdminError> {
    || panic!("the password must not be asked for")
}

#[test]
fn add_records_the_user_with_the_default_allocation_and_audits() {
    let mut f = fixture();
    let added = f.add("zed-nosys", "long enough 1").unwrap();
    assert_eq!(added.user.username, "zed-nosys");
    assert_eq!(added.user.state, "active");
    assert_eq!(added.user.allocation.memory.to_string(), "2G");
    assert!(!added.resumed);
    assert_eq!(added.applied.skipped(), Some("no system account"));
    assert!(matches!(
        f.login("zed-nosys", "long enough 1"),
        LoginOutcome::Success(_)
    ));
    let (_, log) = f.admin().show("zed-nosys", 10).unwrap();
    assert_eq!(log[0].action, "user.add");
    assert_eq!(log[0].actor, "tester");
    assert!(log[0].detail.get("state").is_none(), "no volatile fields");
}

#[test]
fn add_refuses_before_asking_for_a_password() {
    let mut f = fixture();
    f.add("zed-nosys", "long enough 1").unwrap();
    let err = f
        .admin()
        .add(&linked("zed-nosys"), &mut never_asked())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.to_string().contains("already exists"), "{err}");

    // root's account is never linked; a service account only when allowed.
    let err = f
        .admin()
        .add(&linked("root"), &mut never_asked())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    let err = f
        .admin()
        .add(&linked("daemon"), &mut never_asked())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage);
    assert!(err.to_string().contains("--allow-service-account"), "{err}");
}

#[test]
fn a_refused_password_is_a_usage_error_and_leaves_no_record() {
    let mut f = fixture();
    let err = f.add("zed-nosys", "short").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage);
    assert!(err.to_string().starts_with("password refused"), "{err}");
    assert_eq!(f.admin().users().unwrap(), []);
}

#[test]
fn modify_changes_limits_and_applies_them_at_once() {
    let mut f = fixture();
    f.add("zed-nosys", "long enough 1").unwrap();
    f.ports.accounts.set_uid("zed-nosys", Some(1234));
    let changes = UserChanges {
        limits: LimitChanges {
            cpu: Some(Cpu::Percent(2)),
            memory: Some(Size::Bytes(512 << 20)),
            ..LimitChanges::default()
        },
        ..UserChanges::default()
    };
    let modified = f.admin().modify("zed-nosys", &changes).unwrap();
    assert_eq!(modified.user.allocation.memory.to_string(), "512M");
    assert_eq!(modified.warnings.len(), 1, "2% of a core is little");
    let applied = modified.applied.unwrap();
    match &applied.steps[0].outcome {
        StepOutcome::Applied {
            target, settings, ..
        } => {
            assert_eq!(target, "user-1234.slice");
            assert!(settings.contains(&"MemoryMax=536870912".to_owned()));
        }
        other => panic!("{other:?}"),
    }

    // A profile change alone applies nothing.
    let changes = UserChanges {
        email: Some(Some("z@example.org".into())),
        ..UserChanges::default()
    };
    assert!(f
        .admin()
        .modify("zed-nosys", &changes)
        .unwrap()
        .applied
        .is_none());
}

#[test]
fn a_failed_apply_keeps_the_change() {
    let mut f = fixture();
    f.add("zed-nosys", "long enough 1").unwrap();
    f.ports.accounts.set_uid("zed-nosys", Some(1234));
    f.ports.slice.refuse_set = true;
    let changes = UserChanges {
        limits: LimitChanges {
            memory: Some(Size::Bytes(1 << 30)),
            ..LimitChanges::default()
        },
        ..UserChanges::default()
    };
    let modified = f.admin().modify("zed-nosys", &changes).unwrap();
    assert!(!modified.applied.unwrap().is_complete());
    let (view, _) = f.admin().show("zed-nosys", 1).unwrap();
    assert_eq!(
        view.allocation.memory.to_string(),
        "1G",
        "the database is the source of truth"
    );
}

#[test]
fn fair_share_fields_are_stored_shown_and_applied_for_the_nodes_cgroup_version() {
    let mut f = fixture();
    let mut request = linked("zed-nosys");
    request.limits = LimitChanges {
        cpu: Some(Cpu::Infinity),
        cpu_weight: Some("300".parse().unwrap()),
        io_weight: Some("5000".parse().unwrap()),
        memory_high: Some(Size::Bytes(128 << 20)),
        memory: Some(Size::Bytes(512 << 20)),
        ..LimitChanges::default()
    };
    f.ports.accounts.set_uid("zed-nosys", Some(1234));
    let added = f
        .admin()
        .add(&request, &mut || {
            Ok(Zeroizing::new(b"long enough 1".to_vec()))
        })
        .unwrap();
    assert_eq!(
        (
            added.user.allocation.cpu_weight.get(),
            added.user.allocation.io_weight.get(),
            added.user.allocation.memory_high.to_string()
        ),
        (300, 5000, "128M".to_owned())
    );
    let slice = &added.applied.steps[0];
    match &slice.outcome {
        StepOutcome::Applied {
            settings, warning, ..
        } => {
            for expected in ["CPUWeight=300", "IOWeight=5000", "MemoryHigh=134217728"] {
                assert!(settings.iter().any(|s| s == expected), "{settings:?}");
            }
            assert_eq!(warning, &None, "cgroup v2 applies everything");
        }
        other => panic!("{other:?}"),
    }
    let (view, log) = f.admin().show("zed-nosys", 1).unwrap();
    assert_eq!(
        (
            view.allocation.cpu_weight.get(),
            view.allocation.io_weight.get()
        ),
        (300, 5000)
    );
    assert_eq!(log[0].detail["cpu_weight"], 300, "{:?}", log[0].detail);

    // On cgroup v1 the weights are v1's properties, and what v1 cannot do is said.
    f.ports.slice.v1 = true;
    let applied = f.admin().apply(Some("zed-nosys")).unwrap();
    match &applied[0].steps[0].outcome {
        StepOutcome::Applied {
            settings, warning, ..
        } => {
            for expected in ["CPUShares=3072", "BlockIOWeight=1000"] {
                assert!(settings.iter().any(|s| s == expected), "{settings:?}");
            }
            let warning = warning.as_deref().unwrap();
            assert!(
                warning.contains("io-weight 5000 is BlockIOWeight=1000"),
                "{warning}"
            );
            assert!(
                warning.contains("memory-high 128M has no effect on cgroup v1"),
                "{warning}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(applied[0].warnings().len(), 1);
}

#[test]
fn a_soft_memory_limit_above_the_hard_one_is_refused_and_nothing_is_kept() {
    let mut f = fixture();
    let mut request = linked("zed-nosys");
    request.limits = LimitChanges {
        memory: Some(Size::Bytes(512 << 20)),
        memory_high: Some(Size::Bytes(600 << 20)),
        ..LimitChanges::default()
    };
    let err = f.admin().add(&request, &mut never_asked()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage);
    assert!(err.to_string().starts_with("memory-high 600M is above memory 512M: memory-high (the soft limit, MemoryHigh) must not exceed memory"), "{err}");
    assert_eq!(f.admin().users().unwrap(), []);

    // Over the config's defaults: a soft limit above the default 2G.
    request.limits = LimitChanges {
        memory_high: Some(Size::Bytes(3 << 30)),
        ..LimitChanges::default()
    };
    let err = f.admin().add(&request, &mut never_asked()).unwrap_err();
    assert!(
        err.to_string()
            .contains("memory-high 3G is above memory 2G"),
        "{err}"
    );

    // `user mod --memory` under a soft limit set before: refused, rolled back.
    f.add("zed-nosys", "long enough 1").unwrap();
    let set_high = UserChanges {
        limits: LimitChanges {
            memory_high: Some(Size::Bytes(1 << 30)),
            ..LimitChanges::default()
        },
        ..UserChanges::default()
    };
    f.admin().modify("zed-nosys", &set_high).unwrap();
    let lower = UserChanges {
        limits: LimitChanges {
            memory: Some(Size::Bytes(512 << 20)),
            ..LimitChanges::default()
        },
        ..UserChanges::default()
    };
    let err = f.admin().modify("zed-nosys", &lower).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage);
    assert!(
        err.to_string()
            .contains("memory-high 1G is above memory 512M"),
        "{err}"
    );
    let (view, log) = f.admin().show("zed-nosys", 5).unwrap();
    assert_eq!(
        (
            view.allocation.memory.to_string(),
            view.allocation.memory_high.to_string()
        ),
        ("2G".to_owned(), "1G".to_owned())
    );
    assert_eq!(
        log.len(),
        2,
        "the refused change left no audit entry: {log:?}"
    );
    // Both at once is fine.
    let both = UserChanges {
        limits: LimitChanges {
            memory: Some(Size::Bytes(512 << 20)),
            memory_high: Some(Size::Bytes(256 << 20)),
            ..LimitChanges::default()
        },
        ..UserChanges::default()
    };
    f.admin().modify("zed-nosys", &both).unwrap();
}

#[test]
fn modify_errors_are_typed() {
    let mut f = fixture();
    let err = f
        .admin()
        .modify("zed-nosys", &UserChanges::default())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage);
    let changes = UserChanges {
        active: Some(false),
        ..UserChanges::default()
    };
    let err = f.admin().modify("zed-nosys", &changes).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(err.to_string(), "no such user: zed-nosys");
}

#[test]
fn set_password_shares_the_policy_and_audits_as_admin() {
    let mut f = fixture();
    let err = f
        .admin()
        .set_password("zed-nosys", &mut never_asked())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);

    f.add("zed-nosys", "long enough 1").unwrap();
    let err = f
        .admin()
        .set_password("zed-nosys", &mut || Ok(Zeroizing::new(b"short".to_vec())))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage);
    f.admin()
        .set_password("zed-nosys", &mut || {
            Ok(Zeroizing::new(b"another long one".to_vec()))
        })
        .unwrap();
    assert!(matches!(
        f.login("zed-nosys", "another long one"),
        LoginOutcome::Success(_)
    ));
    let (_, log) = f.admin().show("zed-nosys", 10).unwrap();
    let passwd = log.iter().find(|e| e.action == "user.passwd").unwrap();
    assert_eq!(passwd.detail["by"], "admin");
}

#[test]
fn unlock_reports_whether_it_was_locked() {
    let mut f = fixture();
    f.add("zed-nosys", "long enough 1").unwrap();
    assert!(!f.admin().unlock("zed-nosys").unwrap());
    for _ in 0..f.config.lockout.deny {
        f.login("zed-nosys", "wrong");
    }
    assert_eq!(f.login("zed-nosys", "long enough 1"), LoginOutcome::Locked);
    assert_eq!(f.admin().show("zed-nosys", 1).unwrap().0.state, "locked");
    assert!(f.admin().unlock("zed-nosys").unwrap());
    assert!(matches!(
        f.login("zed-nosys", "long enough 1"),
        LoginOutcome::Success(_)
    ));
    assert_eq!(
        f.admin().unlock("nobody-here").unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn delete_removes_the_record() {
    let mut f = fixture();
    f.add("zed-nosys", "long enough 1").unwrap();
    let deleted = f.admin().delete("zed-nosys", true).unwrap();
    assert!(!deleted.system_account_removed);
    assert!(deleted.home_left, "not ours to remove");
    assert_eq!(f.admin().users().unwrap(), []);
    assert_eq!(
        f.admin().delete("zed-nosys", false).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn apply_and_usage_for_one_or_all() {
    let mut f = fixture();
    f.add("zed-nosys", "long enough 1").unwrap();
    f.add("amy-nosys", "long enough 1").unwrap();
    f.ports.accounts.set_uid("amy-nosys", Some(1500));
    let reports = f.admin().apply(None).unwrap();
    assert_eq!(reports.len(), 2);
    let amy = reports.iter().find(|r| r.username == "amy-nosys").unwrap();
    assert!(amy.is_complete() && amy.skipped().is_none());
    let usage = f.admin().usage(Some("zed-nosys")).unwrap();
    assert_eq!(usage[0].usage, None, "no system account, no slice");
    let usage = f.admin().usage(Some("amy-nosys")).unwrap();
    assert_eq!(usage[0].usage.as_ref().unwrap().unit, "user-1500.slice");
    assert_eq!(
        f.admin().apply(Some("nobody-here")).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn quotas_follow_the_allocation_from_add_to_delete() {
    use crate::model::quota::{QuotaLimits, QuotaState};
    let mut f = fixture();
    f.config.quota.filesystems = vec!["/home".into()];
    f.ports.accounts.set_uid("amy-nosys", Some(1500));
    let added = f.add("amy-nosys", "long enough 1").unwrap();
    assert!(added.applied.is_complete(), "{:?}", added.applied.error());
    let home = |f: &Fixture| f.ports.quota.state("/home", 1500);
    assert_eq!(
        home(&f).limits.hard_bytes(),
        Some(5 << 30),
        "the default 5G"
    );

    // Lowered under what she uses: set, with a warning.
    f.ports.quota.hold(
        "/home",
        1500,
        QuotaState {
            used_bytes: 30 << 20,
            ..home(&f)
        },
    );
    let changes = UserChanges {
        limits: LimitChanges {
            disk: Some(Size::Bytes(10 << 20)),
            ..LimitChanges::default()
        },
        ..UserChanges::default()
    };
    let modified = f.admin().modify("amy-nosys", &changes).unwrap();
    let applied = modified.applied.unwrap();
    assert!(applied.is_complete());
    assert_eq!(applied.warnings().len(), 1);
    assert_eq!(home(&f).limits.hard_bytes(), Some(10 << 20));

    let usage = f.admin().usage(Some("amy-nosys")).unwrap();
    let disk = usage[0].disk[0].quota.as_ref().unwrap();
    assert_eq!(
        (disk.used_bytes, disk.limits.hard_bytes()),
        (30 << 20, Some(10 << 20))
    );

    let deleted = f.admin().delete("amy-nosys", false).unwrap();
    assert!(deleted.quota.is_complete());
    assert_eq!(
        home(&f).limits,
        QuotaLimits::NONE,
        "no limit left for uid 1500"
    );
}

#[test]
fn a_quota_that_cannot_be_cleared_does_not_stop_the_delete() {
    let mut f = fixture();
    f.config.quota.filesystems = vec!["/home".into()];
    f.ports.accounts.set_uid("amy-nosys", Some(1500));
    f.add("amy-nosys", "long enough 1").unwrap();
    f.ports.quota.off = vec!["/home".into()];
    let deleted = f.admin().delete("amy-nosys", false).unwrap();
    assert!(deleted.quota.error().unwrap().contains("/home"));
    assert_eq!(
        f.admin().users().unwrap(),
        [],
        "the user is gone all the same"
    );
}

#[test]
fn gpus_are_checked_against_the_node_when_granted() {
    let mut f = fixture();
    let mut request = linked("amy-nosys");
    request.limits.gpus = Some("0".parse().unwrap());
    let password = b"long enough 1".to_vec();
    let err = f
        .admin()
        .add(&request, &mut || Ok(Zeroizing::new(password.clone())))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage);
    assert!(err.to_string().contains("only `none` and `all`"), "{err}");

    request.limits.gpus = Some("all".parse().unwrap());
    f.admin()
        .add(&request, &mut || Ok(Zeroizing::new(password.clone())))
        .unwrap();

    f.ports.gpu.node = one_gpu_node();
    let changes = |list: &str| UserChanges {
        limits: LimitChanges {
            gpus: Some(list.parse().unwrap()),
            ..LimitChanges::default()
        },
        ..UserChanges::default()
    };
    let err = f.admin().modify("amy-nosys", &changes("1")).unwrap_err();
    assert!(
        err.to_string().contains("0 (GPU-82efa4d8"),
        "lists what exists: {err}"
    );
    f.admin()
        .modify(
            "amy-nosys",
            &changes("GPU-82EFA4D8-2419-4B59-E2B6-52028B659AD4"),
        )
        .unwrap();
}

#[test]
fn a_broken_gpu_driver_costs_the_gpu_figures_only() {
    let mut f = fixture();
    f.add("zed-nosys", "long enough 1").unwrap();
    f.add("amy-nosys", "long enough 1").unwrap();
    f.ports.accounts.set_uid("amy-nosys", Some(1500));
    let why =
        "NVML: a libloading error occurred: libnvidia-ml.so.1: cannot open shared object file";
    f.ports.gpu.usage_error = Some(why.into());
    let (users, node) = f.admin().usage_with_gpus(None).unwrap();
    assert_eq!(node, None, "no GPU figures");
    assert_eq!(users.len(), 2, "everyone's usage all the same");
    let amy = users.iter().find(|u| u.username == "amy-nosys").unwrap();
    assert_eq!(amy.usage.as_ref().unwrap().unit, "user-1500.slice");
    assert_eq!(amy.gpu_unavailable.as_deref(), Some(why));
    let document = amy.document();
    assert_eq!(document["gpu_unavailable"], why);
    assert_eq!(document["unit"], "user-1500.slice");
    // Where the figures can be read, the field is there and null.
    f.ports.gpu.usage_error = None;
    let users = f.admin().usage(Some("amy-nosys")).unwrap();
    assert_eq!(users[0].gpu_unavailable, None);
    assert!(users[0].document()["gpu_unavailable"].is_null());
}

#[test]
fn usage_counts_each_users_gpu_memory_by_process_owner() {
    use crate::model::gpu::{GpuProcess, GpuUsage};
    let mut f = fixture();
    f.ports.accounts.set_uid("amy-nosys", Some(1500));
    f.add("amy-nosys", "long enough 1").unwrap();
    let process = |pid, uid, bytes| GpuProcess {
        pid,
        uid: Some(uid),
        memory_bytes: Some(bytes),
        ..GpuProcess::default()
    };
    f.ports.gpu.usage = Some(vec![GpuUsage {
        index: 0,
        uuid: "GPU-82efa4d8-2419-4b59-e2b6-52028b659ad4".into(),
        utilization_percent: Some(40),
        memory_used_bytes: Some(7 << 30),
        memory_total_bytes: Some(140 << 30),
        processes: vec![
            process(10, 1500, 2 << 30),
            process(11, 1500, 1 << 30),
            process(12, 1600, 4 << 30),
        ],
    }]);
    let (users, node) = f.admin().usage_with_gpus(Some("amy-nosys")).unwrap();
    assert_eq!(node.unwrap().len(), 1);
    assert_eq!(users[0].gpus.len(), 1);
    assert_eq!(
        (users[0].gpus[0].processes, users[0].gpus[0].memory_bytes),
        (2, 3 << 30),
        "hers only"
    );
}

#[test]
fn prepare_applies_for_a_usable_account_only_and_gives_the_environment() {
    let mut f = fixture();
    let mut request = linked("amy-nosys");
    request.limits.gpus = Some("all".parse().unwrap());
    let password = b"long enough 1".to_vec();
    f.admin()
        .add(&request, &mut || Ok(Zeroizing::new(password.clone())))
        .unwrap();
    f.add("zed-nosys", "long enough 1").unwrap();
    f.ports.accounts.set_uid("amy-nosys", Some(1500));
    f.ports.gpu.node = one_gpu_node();

    let report = f.admin().prepare("amy-nosys").unwrap();
    assert_eq!(report.uid, Some(1500));
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(
        report.env.get("CUDA_VISIBLE_DEVICES").map(String::as_str),
        Some("GPU-82efa4d8-2419-4b59-e2b6-52028b659ad4")
    );

    let err = f.admin().prepare("zed-nosys").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "no system account: {err}");
    assert_eq!(
        f.admin().prepare("nobody-here").unwrap_err().kind(),
        ErrorKind::NotFound
    );

    // A failed step refuses, as a login's session open does by default...
    f.ports.slice.refuse_set = true;
    assert_eq!(
        f.admin().prepare("amy-nosys").unwrap_err().kind(),
        ErrorKind::Runtime
    );
    // ...and lets it through, saying so, where the config allows it.
    f.config.on_session_error = SessionErrorPolicy::Allow;
    assert!(!f.admin().prepare("amy-nosys").unwrap().is_complete());
    f.ports.slice.refuse_set = false;

    // An account that may not log in gets nothing applied.
    for _ in 0..f.config.lockout.deny {
        f.login("amy-nosys", "wrong");
    }
    let err = f.admin().prepare("amy-nosys").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.to_string().contains("the account is locked"), "{err}");
    f.admin().unlock("amy-nosys").unwrap();
    let disable = UserChanges {
        active: Some(false),
        ..UserChanges::default()
    };
    f.admin().modify("amy-nosys", &disable).unwrap();
    let seen_before = f.ports.slice.journal.borrow().len();
    let err = f.admin().prepare("amy-nosys").unwrap_err();
    assert!(err.to_string().contains("the account is disabled"), "{err}");
    assert_eq!(
        f.ports.slice.journal.borrow().len(),
        seen_before,
        "systemd was not even asked"
    );
}

// ------------------------------------------------- the node's accounts

fn creating(name: &str) -> AddUser {
    AddUser {
        system_account: SystemAccount::Create,
        ..linked(name)
    }
}

impl Fixture {
    fn add_with(&mut self, request: &AddUser) -> Result<Added, AdminError> {
        self.admin().add(request, &mut || {
            Ok(Zeroizing::new(b"long enough 1".to_vec()))
        })
    }

    /// The same use cases as the web admin `caller`.
    fn web_admin(
        &mut self,
        caller: &'static str,
    ) -> Admin<'_, FakeSlice, FakeAccounts, FakeQuotas, FakeGpus> {
        Admin::new(
            &mut self.store,
            &self.config,
            &self.ports,
            "api:tester",
            NOW,
        )
        .from_the_web(caller)
    }
}

#[test]
fn add_makes_the_account_in_the_managed_group_and_records_its_uid() {
    let mut f = fixture();
    let added = f.add_with(&creating("erin")).unwrap();
    let group = f.config.group.clone();
    assert_eq!(
        f.ports.accounts.writes(),
        [
            format!("groupadd --system {group}"),
            format!("useradd --groups {group} erin"),
        ]
    );
    let uid = f.ports.accounts.uid("erin").unwrap().unwrap();
    assert!(uid >= 1000, "{uid}");
    let user = f.store.user("erin").unwrap().unwrap();
    assert_eq!(
        (user.uid, user.owns_system_account, user.pending),
        (Some(uid), true, None)
    );
    assert_eq!(f.ports.accounts.members(&group), ["erin"]);
    // Sized at once, on the account's uid.
    assert_eq!(added.applied.skipped(), None);
    assert!(
        f.ports
            .slice
            .journal
            .borrow()
            .iter()
            .any(|e| e.starts_with(&format!("set user-{uid}.slice"))),
        "{:?}",
        f.ports.slice.journal.borrow()
    );
}

#[test]
fn a_failing_useradd_leaves_no_record() {
    let mut f = fixture();
    f.ports.accounts.refuse = Some("useradd");
    let err = f.add_with(&creating("erin")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Runtime);
    assert!(err.to_string().contains("useradd failed"), "{err}");
    assert!(
        f.store.user("erin").unwrap().is_none(),
        "the record went too"
    );
    assert_eq!(f.ports.accounts.uid("erin").unwrap(), None);
    assert!(f.admin().show("erin", 10).is_err());
}

#[test]
fn link_keeps_the_account_and_puts_it_in_the_group_and_delete_leaves_it() {
    let mut f = fixture();
    f.ports.accounts.set_uid("fred", Some(1500));
    // Made by someone else: `user add` without --no-system-account refuses.
    let err = f.add_with(&creating("fred")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.to_string().contains("--no-system-account"), "{err}");

    f.add_with(&linked("fred")).unwrap();
    let user = f.store.user("fred").unwrap().unwrap();
    assert_eq!((user.uid, user.owns_system_account), (Some(1500), false));
    let group = f.config.group.clone();
    assert_eq!(f.ports.accounts.members(&group), ["fred"]);
    assert!(!f
        .ports
        .accounts
        .writes()
        .iter()
        .any(|w| w.starts_with("useradd")));

    // Deleting a linked user takes them out of the group, not off the node.
    f.admin().delete("fred", true).unwrap();
    assert!(f.store.user("fred").unwrap().is_none());
    assert_eq!(f.ports.accounts.uid("fred").unwrap(), Some(1500));
    assert!(f.ports.accounts.members(&group).is_empty());
    assert!(!f
        .ports
        .accounts
        .writes()
        .iter()
        .any(|w| w.starts_with("userdel")));
}

#[test]
fn delete_removes_the_account_it_made_with_its_home_on_request() {
    let mut f = fixture();
    f.add_with(&creating("erin")).unwrap();
    let deleted = f.admin().delete("erin", true).unwrap();
    assert!(deleted.system_account_removed && deleted.home_removed);
    assert_eq!(
        f.ports.accounts.writes().last().unwrap(),
        "userdel --remove erin"
    );
    assert_eq!(f.ports.accounts.uid("erin").unwrap(), None);
    assert!(f.store.user("erin").unwrap().is_none());

    // A failing userdel keeps the record, marked for the next run.
    f.add_with(&creating("gail")).unwrap();
    f.ports.accounts.refuse = Some("userdel");
    assert_eq!(
        f.admin().delete("gail", false).unwrap_err().kind(),
        ErrorKind::Runtime
    );
    let gail = f.store.user("gail").unwrap().unwrap();
    assert_eq!(gail.pending, Some(Pending::Del));
}

#[test]
fn the_web_links_no_account_unless_the_config_allows_and_never_a_privileged_one() {
    let mut f = fixture();
    f.ports.accounts.set_uid("hal", Some(1600));
    f.ports.accounts.set_uid("ivy", Some(1601));
    f.ports
        .accounts
        .groups
        .borrow_mut()
        .insert("sudo".into(), vec!["ivy".into()]);
    let add = |f: &mut Fixture, name: &str| {
        f.web_admin("boss").add(&linked(name), &mut || {
            Ok(Zeroizing::new(b"long enough 1".to_vec()))
        })
    };
    assert_eq!(add(&mut f, "hal").unwrap_err().kind(), ErrorKind::Forbidden);
    f.config.link_from_web = WebLink::Unprivileged;
    let err = add(&mut f, "ivy").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Forbidden);
    assert!(err.to_string().contains("sudo"), "{err}");
    add(&mut f, "hal").unwrap();
    f.config.link_from_web = WebLink::All;
    add(&mut f, "ivy").unwrap();
    // Root links whatever the config says.
    f.ports.accounts.set_uid("jan", Some(1602));
    f.config.link_from_web = WebLink::None;
    f.add_with(&linked("jan")).unwrap();
}

#[test]
fn a_web_admin_cannot_disable_demote_or_delete_themself() {
    let mut f = fixture();
    let boss = AddUser {
        role: Role::Admin,
        ..linked("boss")
    };
    f.add_with(&boss).unwrap();
    f.add_with(&AddUser {
        role: Role::Admin,
        ..linked("deputy")
    })
    .unwrap();
    let disable = UserChanges {
        active: Some(false),
        ..UserChanges::default()
    };
    let demote = UserChanges {
        role: Some(Role::User),
        ..UserChanges::default()
    };
    for (changes, what) in [(&disable, "disable"), (&demote, "demote")] {
        let err = f.web_admin("boss").modify("boss", changes).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert_eq!(
            err.to_string(),
            format!("an admin cannot {what} themself: another admin must")
        );
    }
    let err = f.web_admin("boss").delete("boss", false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "an admin cannot delete themself: another admin must"
    );
    let boss_now = f.store.user("boss").unwrap().unwrap();
    assert_eq!((boss_now.role, boss_now.active), (Role::Admin, true));

    // Other changes of their own are theirs to make; another admin, or
    // root, may do what they may not.
    let email = UserChanges {
        email: Some(Some("boss@example.org".into())),
        ..UserChanges::default()
    };
    f.web_admin("boss").modify("boss", &email).unwrap();
    f.web_admin("deputy").modify("boss", &demote).unwrap();
    f.admin().modify("boss", &disable).unwrap();
    f.web_admin("deputy").delete("boss", false).unwrap();
}
