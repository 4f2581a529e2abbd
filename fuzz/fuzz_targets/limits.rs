//! Resource limits as an admin types them (`--memory 2G`, `--cpu 150%`,
//! `--gpus 0,GPU-...`): every value that parses prints a canonical text that
//! parses back to the same value and prints the same again (the database
//! stores that text), weights map into cgroup v1's ranges, the soft memory
//! limit rule holds, and the warnings agree with the documented thresholds.
#![deny(unsafe_code)]
#![no_main]

use std::fmt::Display;
use std::str::FromStr;

use libdiycloud::model::{Allocation, Cpu, GpuList, LimitChanges, Size, Tasks, Weight};
use libfuzzer_sys::fuzz_target;

/// Parses `input` as `T`; when it parses, checks the Display round trip and
/// returns the value.
fn round_trip<T>(input: &str) -> Option<T>
where
    T: FromStr + Display + PartialEq + std::fmt::Debug,
    T::Err: Display,
{
    let value: T = input.parse().ok()?;
    let shown = value.to_string();
    let again: T = match shown.parse() {
        Ok(again) => again,
        Err(e) => panic!("{input:?} parsed to {value:?}, shown as {shown:?}, which fails: {e}"),
    };
    assert_eq!(
        again, value,
        "{input:?} -> {shown:?} parses to another value"
    );
    assert_eq!(
        again.to_string(),
        shown,
        "{input:?}: the display is not stable"
    );
    Some(value)
}

const INFINITY: &str = "infinity";

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };

    let size = round_trip::<Size>(input);
    if let Some(size) = size {
        match size {
            Size::Infinity => {
                assert_eq!(input, INFINITY);
                assert_eq!(size.as_systemd_u64(), u64::MAX);
            }
            Size::Bytes(b) => {
                // systemd's u64::MAX means "infinity": never a byte count.
                assert!(b > 0 && b < u64::MAX, "{input:?} -> {b} bytes");
                assert_eq!(size.as_systemd_u64(), b);
            }
        }
    }

    let cpu = round_trip::<Cpu>(input);
    if let Some(cpu) = cpu {
        match cpu {
            Cpu::Infinity => {
                assert_eq!(input, INFINITY);
                assert_eq!(cpu.cores(), None);
                assert_eq!(cpu.quota_per_sec_usec(), u64::MAX);
            }
            Cpu::Percent(p) => {
                // CPU_RULE: more than 0, at most 4096 cores.
                assert!(p > 0 && p <= 4096 * 100, "{input:?} -> {p}%");
                assert_eq!(cpu.quota_per_sec_usec(), u64::from(p) * 10_000);
            }
        }
        // What the REAL column stores reads back as the same allowance.
        assert_eq!(
            Cpu::from_cores(cpu.cores()).ok(),
            Some(cpu),
            "{input:?}: cores() -> from_cores() changes the value"
        );
    }

    let tasks = round_trip::<Tasks>(input);
    if let Some(tasks) = tasks {
        match tasks {
            Tasks::Infinity => assert_eq!(input, INFINITY),
            Tasks::Count(n) => {
                assert!(n > 0, "{input:?}");
                assert_eq!(tasks.as_systemd_u64(), u64::from(n));
            }
        }
    }

    if let Some(GpuList::Some(ids)) = round_trip::<GpuList>(input) {
        assert!(!ids.is_empty(), "{input:?}: an empty explicit list");
        for (i, a) in ids.iter().enumerate() {
            assert!(!ids[..i].contains(a), "{input:?}: repeated GPU {a}");
        }
    }

    if let Some(weight) = round_trip::<Weight>(input) {
        let w = u64::from(weight.get());
        assert!((1..=10_000).contains(&w), "{input:?} -> weight {w}");
        assert_eq!(weight.cpu_shares(), w * 1024 / 100);
        let (block_io, clamped) = weight.block_io_weight();
        assert!((10..=1000).contains(&block_io), "{input:?} -> {block_io}");
        assert_eq!(clamped, block_io != w, "{input:?}");
    }

    // The soft memory limit may not exceed the hard one (the default 2G).
    if let Some(high) = size {
        let allocation = Allocation {
            memory_high: high,
            ..Allocation::default()
        };
        let above = matches!(high, Size::Bytes(b) if b > 2 << 30);
        assert_eq!(allocation.check().is_err(), above, "{input:?}");
    }

    // The same text as every argument of the warnings: they must not panic,
    // and there is one warning exactly for each documented threshold crossed.
    let changes = LimitChanges {
        cpu,
        memory: size,
        disk: size,
        tasks,
        memory_high: size,
        ..LimitChanges::default()
    };
    let out = changes.warnings();
    let expected = [
        matches!(cpu, Some(Cpu::Percent(p)) if p < 5),
        matches!(size, Some(Size::Bytes(b)) if b < 64 << 20),
        matches!(tasks, Some(Tasks::Count(n)) if n < 16),
        matches!(size, Some(Size::Bytes(b)) if b < 1 << 20),
        matches!(size, Some(Size::Bytes(b)) if b < 64 << 20),
    ];
    assert_eq!(
        out.len(),
        expected.iter().filter(|w| **w).count(),
        "{input:?}: warnings {out:?}"
    );
    for line in &out {
        assert!(!line.is_empty() && !line.contains('\n'), "{line:?}");
    }
});
