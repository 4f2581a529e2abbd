//! The apply use case against fake ports: what it sends, in which order,
//! and what it reports when a step fails.

use super::*;
use crate::config::QuotaConfig;
use crate::model::limits::{Allocation, Cpu, Size, Tasks};
use crate::model::quota::QuotaPolicy;
use crate::model::user::test_user;
use crate::testing::{FakeAccounts, FakeGpus, FakeQuotas, FakeSlice, Journal};

/// `name` with 0.5 core, 512M and 64 tasks.
fn user(name: &str, uid: Option<u32>) -> User {
    User {
        allocation: Allocation {
            cpu: Cpu::Percent(50),
            memory: Size::Bytes(512 << 20),
            tasks: Tasks::Count(64),
            ..Allocation::default()
        },
        ..test_user(name, uid)
    }
}

type FakePorts = Ports<FakeSlice, FakeAccounts, FakeQuotas, FakeGpus>;

/// The ports, with alice's account at uid 1000 (as her records have it)
/// unless `accounts` says otherwise.
fn ports(slice: FakeSlice, accounts: FakeAccounts) -> (FakePorts, Journal) {
    if accounts.uid("alice").ok().flatten().is_none() {
        accounts.set_uid("alice", Some(1000));
    }
    let journal = slice.journal.clone();
    let quota = FakeQuotas {
        journal: journal.clone(),
        ..FakeQuotas::default()
    };
    (
        Ports {
            slice,
            accounts,
            quota,
            gpu: FakeGpus::default(),
        },
        journal,
    )
}

/// No quota filesystems: quotas off, as by default.
fn no_quotas() -> Config {
    Config::default()
}

/// Quotas on /home and /srv/scratch, soft limits at 90%.
fn quotas() -> Config {
    Config {
        quota: QuotaConfig {
            filesystems: vec!["/home".into(), "/srv/scratch".into()],
            policy: QuotaPolicy {
                soft_percent: Some(90),
                inodes: None,
            },
        },
        ..Config::default()
    }
}

fn journal(j: &Journal) -> Vec<String> {
    j.borrow().clone()
}

const ALICE_SET: &str = "set user-1000.slice CPUAccounting=yes MemoryAccounting=yes \
    TasksAccounting=yes CPUQuotaPerSecUSec=500000 MemoryMax=536870912 MemoryHigh=infinity TasksMax=64 CPUWeight=100 IOWeight=100";

#[test]
fn sizes_the_slice_and_closes_the_connection() {
    let (ports, j) = ports(FakeSlice::default(), FakeAccounts::default());
    let report = apply(&ports, &no_quotas(), &user("alice", Some(1000)));
    assert_eq!(
        journal(&j),
        ["connect started", "connected", ALICE_SET, "closed"]
    );
    assert!(report.is_complete());
    assert_eq!(report.uid, Some(1000));
    assert_eq!(report.skipped(), None);
    assert_eq!(report.error(), None);
    assert_eq!(
        report.steps,
        [StepReport {
            step: Step::Slice,
            outcome: StepOutcome::Applied {
                target: "user-1000.slice".into(),
                settings: ALICE_SET.split(' ').skip(2).map(String::from).collect(),
                changed: true,
                warning: None,
            },
        }]
    );
    assert!(report.env.is_empty());
}

#[test]
fn an_unknown_cgroup_version_fails_the_slice_step_and_still_closes_the_link() {
    let slice = FakeSlice {
        no_cgroups: true,
        ..FakeSlice::default()
    };
    let (ports, j) = ports(slice, FakeAccounts::default());
    let report = apply(&ports, &no_quotas(), &user("alice", Some(1000)));
    assert_eq!(journal(&j), ["connect started", "connected", "closed"]);
    assert_eq!(
        report.error().unwrap(),
        "user-1000.slice: cannot tell the node's cgroup version: statfs /sys/fs/cgroup: no such file"
    );
}

#[test]
fn a_failing_step_is_reported_with_its_target_and_the_link_still_closed() {
    let slice = FakeSlice {
        refuse_set: true,
        ..FakeSlice::default()
    };
    let (ports, j) = ports(slice, FakeAccounts::default());
    let report = apply(&ports, &no_quotas(), &user("alice", Some(1000)));
    assert_eq!(journal(&j).last().map(String::as_str), Some("closed"));
    assert!(!report.is_complete());
    assert_eq!(
        report.error().unwrap(),
        "user-1000.slice: systemd SetUnitProperties failed: access denied"
    );
    assert!(report.applied().is_empty());
}

#[test]
fn an_unreachable_systemd_fails_the_step() {
    let slice = FakeSlice {
        refuse_connect: true,
        ..FakeSlice::default()
    };
    let (ports, j) = ports(slice, FakeAccounts::default());
    let report = apply(&ports, &no_quotas(), &user("alice", Some(1000)));
    assert!(!journal(&j).iter().any(|e| e.starts_with("set")));
    assert!(report.error().unwrap().contains("cannot reach systemd"));
}

#[test]
fn the_uid_comes_from_the_system_when_the_record_has_none() {
    let accounts = FakeAccounts::with(&[("alice", 1000)]);
    let (ports, j) = ports(FakeSlice::default(), accounts);
    let report = apply(&ports, &no_quotas(), &user("alice", None));
    assert!(journal(&j).contains(&ALICE_SET.to_owned()));
    assert_eq!(report.uid, Some(1000));
}

#[test]
fn limits_bind_to_the_accounts_uid_now_and_a_record_that_differs_applies_nothing() {
    // alice was deleted and made again: her account has uid 1005 now, and
    // 1000 (the record's) may be someone else's.
    let accounts = FakeAccounts::with(&[("alice", 1005)]);
    let (ports, j) = ports(FakeSlice::default(), accounts);
    let report = apply(&ports, &quotas(), &user("alice", Some(1000)));
    assert!(
        !journal(&j)
            .iter()
            .any(|line| line.contains("user-1000.slice")
                || line.contains("user-1005.slice")
                || line.contains("quota")),
        "{:?}",
        journal(&j)
    );
    let error = report.error().unwrap();
    assert!(error.contains("the record says uid 1000"), "{error}");
    assert!(error.contains("slicectl user relink alice"), "{error}");
    assert!(!report.is_complete());
    // Her account is gone: nothing is applied either.
    let (mut ports, j) = ports_with(FakeAccounts::default());
    ports.accounts = FakeAccounts::default();
    let report = apply(&ports, &no_quotas(), &user("alice", Some(1000)));
    assert!(journal(&j).is_empty(), "{:?}", journal(&j));
    assert!(report.error().unwrap().contains("no account alice"));
    assert!(uid_of(&ports, &user("alice", Some(1000))).is_err());
}

#[test]
fn no_system_account_skips_without_touching_systemd() {
    let (ports, j) = ports(FakeSlice::default(), FakeAccounts::default());
    let report = apply(&ports, &no_quotas(), &user("bob", None));
    assert!(journal(&j).is_empty(), "{:?}", journal(&j));
    assert!(report.is_complete());
    assert_eq!(report.skipped(), Some("no system account"));

    let broken = FakeAccounts {
        broken: true,
        ..FakeAccounts::default()
    };
    let (ports, _) = ports_with(broken);
    let report = apply(&ports, &no_quotas(), &user("bob", None));
    assert!(report.error().unwrap().contains("NSS is down"));
}

fn ports_with(accounts: FakeAccounts) -> (FakePorts, Journal) {
    ports(FakeSlice::default(), accounts)
}

#[test]
fn the_lookup_runs_while_the_connection_is_being_made() {
    let (ports, j) = ports(FakeSlice::default(), FakeAccounts::default());
    let looked_up = apply_looked_up(&ports, &no_quotas(), || {
        j.borrow_mut().push("lookup".into());
        Ok::<_, String>(Some(user("alice", Some(1000))))
    })
    .unwrap()
    .unwrap();
    assert_eq!(
        journal(&j),
        [
            "connect started",
            "lookup",
            "connected",
            ALICE_SET,
            "closed"
        ]
    );
    assert!(looked_up.is_complete());

    // Nobody found, or the lookup failed: nothing is sent.
    let (ports, j) = ports_with(FakeAccounts::default());
    assert_eq!(
        apply_looked_up(&ports, &no_quotas(), || Ok::<_, String>(None)),
        Ok(None)
    );
    assert_eq!(
        apply_looked_up(&ports, &no_quotas(), || Err::<Option<User>, _>(
            "db gone".to_owned()
        )),
        Err("db gone".to_owned())
    );
    assert!(!journal(&j).iter().any(|e| e.starts_with("set")));
}

#[test]
fn usage_reads_the_users_slice() {
    let (ports, j) = ports(FakeSlice::default(), FakeAccounts::default());
    let usage = usage(&ports, &user("alice", Some(1000))).unwrap().unwrap();
    assert_eq!(usage.memory_current, Some(1 << 20));
    assert_eq!(
        journal(&j),
        [
            "connect started",
            "connected",
            "usage user-1000.slice",
            "closed"
        ]
    );
    assert_eq!(usage_of_nobody(&ports), None);
}

fn usage_of_nobody(ports: &FakePorts) -> Option<SliceUsage> {
    usage(ports, &user("bob", None)).unwrap()
}

#[test]
fn the_report_as_json() {
    let (ports, _) = ports(FakeSlice::default(), FakeAccounts::default());
    let report = apply(&ports, &no_quotas(), &user("alice", Some(1000)));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["steps"][0]["step"], "slice");
    assert_eq!(json["steps"][0]["result"], "applied");
    assert_eq!(json["steps"][0]["target"], "user-1000.slice");
    assert_eq!(json["env"], serde_json::json!({}));
}

/// alice's quota on both filesystems: her 5G default disk, soft at 90%.
const ALICE_QUOTA: &str = "limit=5G soft=4608M";

#[test]
fn sets_the_quota_on_each_filesystem_while_systemd_works_on_the_slice() {
    let (ports, j) = ports(FakeSlice::default(), FakeAccounts::default());
    let report = apply(&ports, &quotas(), &user("alice", Some(1000)));
    assert_eq!(
        journal(&j),
        [
            "connect started".to_owned(),
            "quota filesystems /home /srv/scratch".to_owned(),
            "quota get /home 1000".to_owned(),
            format!("quota set /home 1000 {ALICE_QUOTA}"),
            "quota get /srv/scratch 1000".to_owned(),
            format!("quota set /srv/scratch 1000 {ALICE_QUOTA}"),
            "connected".to_owned(),
            ALICE_SET.to_owned(),
            "closed".to_owned(),
        ]
    );
    assert!(report.is_complete(), "{:?}", report.error());
    assert_eq!(report.steps.len(), 3);
    assert_eq!(
        report.steps[1],
        StepReport {
            step: Step::Quota,
            outcome: StepOutcome::Applied {
                target: "/home".into(),
                settings: vec!["limit=5G".into(), "soft=4608M".into()],
                changed: true,
                warning: None,
            },
        }
    );
    assert_eq!(
        ports.quota.state("/srv/scratch", 1000).limits.hard_bytes(),
        Some(5 << 30)
    );
    assert_eq!(
        report.applied()[1],
        format!("quota on /home {}", ALICE_QUOTA)
    );
}

#[test]
fn limits_that_already_match_are_read_and_not_written() {
    let (ports, j) = ports(FakeSlice::default(), FakeAccounts::default());
    apply(&ports, &quotas(), &user("alice", Some(1000)));
    j.borrow_mut().clear();
    let again = apply(&ports, &quotas(), &user("alice", Some(1000)));
    let quota_calls: Vec<String> = journal(&j)
        .into_iter()
        .filter(|e| e.starts_with("quota"))
        .collect();
    assert_eq!(
        quota_calls,
        [
            "quota filesystems /home /srv/scratch",
            "quota get /home 1000",
            "quota get /srv/scratch 1000"
        ]
    );
    assert!(again.is_complete());
    assert!(matches!(
        again.steps[1].outcome,
        StepOutcome::Applied { changed: false, .. }
    ));
    assert!(again.applied()[1].ends_with("(already set)"));

    // A changed allocation is written again.
    let mut bigger = user("alice", Some(1000));
    bigger.allocation.disk = Size::Bytes(40 << 20);
    j.borrow_mut().clear();
    apply(&ports, &quotas(), &bigger);
    assert!(journal(&j).contains(&"quota set /home 1000 limit=40M soft=36M".to_owned()));
}

#[test]
fn a_quota_under_current_use_is_set_with_a_warning() {
    let (ports, _) = ports(FakeSlice::default(), FakeAccounts::default());
    ports.quota.hold(
        "/home",
        1000,
        QuotaState {
            used_bytes: 30 << 20,
            ..QuotaState::default()
        },
    );
    let mut small = user("alice", Some(1000));
    small.allocation.disk = Size::Bytes(10 << 20);
    let report = apply(&ports, &quotas(), &small);
    assert!(report.is_complete(), "accepted: {:?}", report.error());
    assert_eq!(
        ports.quota.state("/home", 1000).limits.hard_bytes(),
        Some(10 << 20)
    );
    let warnings = report.warnings();
    assert_eq!(warnings.len(), 1, "only /home is over: {warnings:?}");
    assert!(
        warnings[0].starts_with("alice: /home: uses 30M of disk, over the new 10M limit"),
        "{warnings:?}"
    );
}

#[test]
fn a_filesystem_without_quotas_fails_its_step_only() {
    let (mut ports, j) = ports(FakeSlice::default(), FakeAccounts::default());
    ports.quota.off = vec!["/srv/scratch".into()];
    let report = apply(&ports, &quotas(), &user("alice", Some(1000)));
    assert!(
        journal(&j).contains(&ALICE_SET.to_owned()),
        "the slice is still sized"
    );
    assert_eq!(
        ports.quota.state("/home", 1000).limits.hard_bytes(),
        Some(5 << 30),
        "and the other filesystem's quota set"
    );
    assert_eq!(
        report.error().unwrap(),
        "/srv/scratch: /srv/scratch (ext4) is mounted without user quotas: mount with usrquota"
    );

    let (mut ports, _) = ports_with(FakeAccounts::default());
    ports.quota.refuse_set = true;
    let report = apply(&ports, &quotas(), &user("alice", Some(1000)));
    assert_eq!(report.failures().count(), 2);
    assert!(report.error().unwrap().contains("Operation not permitted"));
}

#[test]
fn no_system_account_skips_every_step_and_a_broken_lookup_fails_them() {
    let (ports, j) = ports(FakeSlice::default(), FakeAccounts::default());
    let report = apply(&ports, &quotas(), &user("bob", None));
    assert!(journal(&j).is_empty(), "{:?}", journal(&j));
    assert_eq!(report.steps.len(), 3);
    assert_eq!(report.skipped(), Some("no system account"));

    let (ports, _) = ports_with(FakeAccounts {
        broken: true,
        ..FakeAccounts::default()
    });
    let report = apply(&ports, &quotas(), &user("bob", None));
    assert_eq!(report.failures().count(), 3);
}

#[test]
fn clearing_takes_every_limit_off() {
    let (ports, j) = ports(FakeSlice::default(), FakeAccounts::default());
    apply(&ports, &quotas(), &user("alice", Some(1000)));
    j.borrow_mut().clear();
    let cleared = clear_quotas(&ports, &quotas(), &user("alice", Some(1000)));
    assert!(cleared.is_complete());
    assert_eq!(ports.quota.state("/home", 1000).limits, QuotaLimits::NONE);
    assert_eq!(
        ports.quota.state("/srv/scratch", 1000).limits,
        QuotaLimits::NONE
    );
    assert!(
        !journal(&j).iter().any(|e| e.contains("slice")),
        "systemd is not asked"
    );
    let nothing = clear_quotas(&ports, &no_quotas(), &user("alice", Some(1000)));
    assert!(nothing.steps.is_empty());
}

#[test]
fn disk_usage_per_filesystem_keeps_each_error() {
    let (mut ports, _) = ports(FakeSlice::default(), FakeAccounts::default());
    ports.quota.off = vec!["/srv/scratch".into()];
    ports.quota.hold(
        "/home",
        1000,
        QuotaState {
            used_bytes: 12345,
            ..QuotaState::default()
        },
    );
    let disk = disk_usage(&ports, &quotas(), &user("alice", Some(1000))).unwrap();
    assert_eq!(disk.len(), 2);
    assert_eq!(disk[0].quota.as_ref().unwrap().used_bytes, 12345);
    assert!(disk[1].quota.as_ref().unwrap_err().contains("usrquota"));
    assert!(disk_usage(&ports, &quotas(), &user("bob", None))
        .unwrap()
        .is_empty());
}

/// A node with two GPUs (minors 2 and 0) and the usual character majors.
fn gpu_node() -> FakeGpus {
    use crate::model::gpu::{char_majors, GpuNode, NodeGpu};
    FakeGpus {
        node: GpuNode {
            gpus: vec![
                NodeGpu {
                    index: 0,
                    uuid: Some("GPU-82efa4d8-2419-4b59-e2b6-52028b659ad4".into()),
                    minor: 2,
                    migs: vec![],
                },
                NodeGpu {
                    index: 1,
                    uuid: None,
                    minor: 0,
                    migs: vec![],
                },
            ],
            majors: char_majors("Character devices:\n  1 mem\n136 pts\n195 nvidia\n"),
            present: vec!["/dev/nvidiactl"],
        },
        ..FakeGpus::default()
    }
}

#[test]
fn a_gpu_grant_rides_on_the_slice_call_and_sets_the_environment() {
    let (mut ports, j) = ports(FakeSlice::default(), FakeAccounts::default());
    ports.gpu = gpu_node();
    let mut alice = user("alice", Some(1000));
    alice.allocation.gpus = "0".parse().unwrap();
    let report = apply(&ports, &no_quotas(), &alice);
    assert!(report.is_complete(), "{:?}", report.error());
    let set = journal(&j)
        .into_iter()
        .find(|e| e.starts_with("set "))
        .unwrap();
    assert!(
        set.ends_with(
            "DeviceAllow= DeviceAllow=char-mem:rwm,char-pts:rwm,/dev/nvidiactl:rw,/dev/nvidia2:rw DevicePolicy=closed"
        ),
        "one call, the list cleared then set: {set}"
    );
    assert_eq!(
        report.env["CUDA_VISIBLE_DEVICES"],
        "GPU-82efa4d8-2419-4b59-e2b6-52028b659ad4"
    );
    let gpus = report.steps.last().unwrap();
    assert_eq!(gpus.step, Step::Gpus);
    assert!(report.applied().last().unwrap().ends_with("/dev/nvidia2"));
    // The slice step shows the allocation only.
    assert!(!report.applied()[0].contains("Device"));
}

#[test]
fn gpu_steps_without_gpus_a_failing_node_and_a_failing_slice() {
    // No GPUs on the node: no step, no device policy, no environment.
    let (ports, j) = ports(FakeSlice::default(), FakeAccounts::default());
    let report = apply(&ports, &no_quotas(), &user("alice", Some(1000)));
    assert_eq!(report.steps.len(), 1);
    assert!(!journal(&j).iter().any(|e| e.contains("Device")));
    assert!(report.env.is_empty());

    // Nobody granted on a GPU node: closed, no NVIDIA node, CUDA sees none.
    let (mut ports, j) = ports_with(FakeAccounts::default());
    ports.gpu = gpu_node();
    let report = apply(&ports, &no_quotas(), &user("alice", Some(1000)));
    assert!(journal(&j)
        .iter()
        .any(|e| e.contains("DevicePolicy=closed")));
    assert!(!journal(&j).iter().any(|e| e.contains("/dev/nvidia")));
    assert_eq!(report.env["CUDA_VISIBLE_DEVICES"], "");

    // A GPU the node does not have, or unreadable facts: the step fails.
    let (mut ports, _) = ports_with(FakeAccounts::default());
    ports.gpu = gpu_node();
    let mut alice = user("alice", Some(1000));
    alice.allocation.gpus = "7".parse().unwrap();
    let report = apply(&ports, &no_quotas(), &alice);
    assert!(
        report.error().unwrap().contains("no GPU 7"),
        "{:?}",
        report.error()
    );
    ports.gpu.broken = true;
    let report = apply(&ports, &no_quotas(), &user("alice", Some(1000)));
    assert!(report.error().unwrap().contains("/proc/devices"));

    // The slice call fails: its error once, the GPU step skipped.
    let slice = FakeSlice {
        refuse_set: true,
        ..FakeSlice::default()
    };
    let (mut refusing, _) = self::ports(slice, FakeAccounts::default());
    refusing.gpu = gpu_node();
    let report = apply(&refusing, &no_quotas(), &user("alice", Some(1000)));
    assert_eq!(report.failures().count(), 1);
    assert!(report.env.is_empty(), "no environment for a policy not set");
}
