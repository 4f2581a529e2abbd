//! The apply use case against fake ports: what it sends, in which order,
//! and what it reports when a step fails.

use super::fakes::{FakeAccounts, FakeSlice, Journal};
use super::*;
use crate::model::limits::{Allocation, Cpu, Size, Tasks};
use crate::model::user::test_user;

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

fn ports(slice: FakeSlice, accounts: FakeAccounts) -> (Ports<FakeSlice, FakeAccounts>, Journal) {
    let journal = slice.journal.clone();
    (Ports { slice, accounts }, journal)
}

fn journal(j: &Journal) -> Vec<String> {
    j.borrow().clone()
}

const ALICE_SET: &str = "set user-1000.slice CPUAccounting=yes MemoryAccounting=yes \
    TasksAccounting=yes CPUQuotaPerSecUSec=500000 MemoryMax=536870912 TasksMax=64";

#[test]
fn sizes_the_slice_and_closes_the_connection() {
    let (ports, j) = ports(FakeSlice::default(), FakeAccounts::default());
    let report = apply(&ports, &user("alice", Some(1000)));
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
            },
        }]
    );
    assert!(report.env.is_empty());
}

#[test]
fn a_failing_step_is_reported_with_its_target_and_the_link_still_closed() {
    let slice = FakeSlice {
        refuse_set: true,
        ..FakeSlice::default()
    };
    let (ports, j) = ports(slice, FakeAccounts::default());
    let report = apply(&ports, &user("alice", Some(1000)));
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
    let report = apply(&ports, &user("alice", Some(1000)));
    assert!(!journal(&j).iter().any(|e| e.starts_with("set")));
    assert!(report.error().unwrap().contains("cannot reach systemd"));
}

#[test]
fn the_uid_comes_from_the_system_when_the_record_has_none() {
    let accounts = FakeAccounts {
        uids: vec![("alice", 1000)],
        ..FakeAccounts::default()
    };
    let (ports, j) = ports(FakeSlice::default(), accounts);
    let report = apply(&ports, &user("alice", None));
    assert!(journal(&j).contains(&ALICE_SET.to_owned()));
    assert_eq!(report.uid, Some(1000));
}

#[test]
fn no_system_account_skips_without_touching_systemd() {
    let (ports, j) = ports(FakeSlice::default(), FakeAccounts::default());
    let report = apply(&ports, &user("bob", None));
    assert!(journal(&j).is_empty(), "{:?}", journal(&j));
    assert!(report.is_complete());
    assert_eq!(report.skipped(), Some("no system account"));

    let broken = FakeAccounts {
        broken: true,
        ..FakeAccounts::default()
    };
    let (ports, _) = ports_with(broken);
    let report = apply(&ports, &user("bob", None));
    assert!(report.error().unwrap().contains("NSS is down"));
}

fn ports_with(accounts: FakeAccounts) -> (Ports<FakeSlice, FakeAccounts>, Journal) {
    ports(FakeSlice::default(), accounts)
}

#[test]
fn the_lookup_runs_while_the_connection_is_being_made() {
    let (ports, j) = ports(FakeSlice::default(), FakeAccounts::default());
    let looked_up = apply_looked_up(&ports, || {
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
    assert_eq!(apply_looked_up(&ports, || Ok::<_, String>(None)), Ok(None));
    assert_eq!(
        apply_looked_up(&ports, || Err::<Option<User>, _>("db gone".to_owned())),
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

fn usage_of_nobody(ports: &Ports<FakeSlice, FakeAccounts>) -> Option<SliceUsage> {
    usage(ports, &user("bob", None)).unwrap()
}

#[test]
fn the_report_as_json() {
    let (ports, _) = ports(FakeSlice::default(), FakeAccounts::default());
    let report = apply(&ports, &user("alice", Some(1000)));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["steps"][0]["step"], "slice");
    assert_eq!(json["steps"][0]["result"], "applied");
    assert_eq!(json["steps"][0]["target"], "user-1000.slice");
    assert_eq!(json["env"], serde_json::json!({}));
}
