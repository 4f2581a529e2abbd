//! A user's disk quota in the kernel's terms (DESIGN §9): the allocation's
//! `disk` as 1 KiB quota blocks, the soft limit as a share of the hard one,
//! an optional inode limit. Pure: the quotactl adapter reads and sets these.

use super::limits::Size;

/// The unit of `dqb_bhardlimit`/`dqb_bsoftlimit` (Linux `QIF_DQBLKSIZE`).
pub const QUOTA_BLOCK_BYTES: u64 = 1024;

/// Limits as quotactl has them; 0 is "no limit", as the kernel reads it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaLimits {
    /// 1 KiB blocks.
    pub block_hard: u64,
    pub block_soft: u64,
    pub inode_hard: u64,
    pub inode_soft: u64,
}

impl QuotaLimits {
    /// No limit at all: what `user del` leaves.
    pub const NONE: QuotaLimits = QuotaLimits {
        block_hard: 0,
        block_soft: 0,
        inode_hard: 0,
        inode_soft: 0,
    };

    /// The hard block limit in bytes; `None`: no limit.
    pub fn hard_bytes(&self) -> Option<u64> {
        limit(self.block_hard).map(|b| b.saturating_mul(QUOTA_BLOCK_BYTES))
    }

    pub fn soft_bytes(&self) -> Option<u64> {
        limit(self.block_soft).map(|b| b.saturating_mul(QUOTA_BLOCK_BYTES))
    }

    pub fn hard_inodes(&self) -> Option<u64> {
        limit(self.inode_hard)
    }

    pub fn soft_inodes(&self) -> Option<u64> {
        limit(self.inode_soft)
    }

    /// The limits as `key=value` settings, for reports: `limit=20M
    /// soft=18M`, then `files=`/`soft-files=` where there is an inode limit.
    pub fn settings(&self) -> Vec<String> {
        let size = |bytes: Option<u64>| bytes.map_or(Size::Infinity, Size::Bytes).to_string();
        let mut settings = vec![
            format!("limit={}", size(self.hard_bytes())),
            format!("soft={}", size(self.soft_bytes())),
        ];
        if let Some(files) = self.hard_inodes() {
            settings.push(format!("files={files}"));
            settings.push(format!(
                "soft-files={}",
                self.soft_inodes()
                    .map_or("infinity".into(), |n| n.to_string())
            ));
        }
        settings
    }
}

/// 0 means "no limit" to the kernel.
fn limit(value: u64) -> Option<u64> {
    (value != 0).then_some(value)
}

/// What the kernel holds for a user on one filesystem.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaState {
    pub limits: QuotaLimits,
    pub used_bytes: u64,
    pub used_inodes: u64,
}

impl QuotaState {
    /// Where `limits` would leave this usage over a hard limit, a warning
    /// that says so (the kernel accepts it: the user can delete files but
    /// not write until back under the limit).
    pub fn over(&self, limits: &QuotaLimits) -> Option<String> {
        let mut over = Vec::new();
        if let Some(hard) = limits.hard_bytes().filter(|h| self.used_bytes > *h) {
            over.push(format!(
                "uses {} of disk, over the new {} limit",
                Size::Bytes(self.used_bytes.div_ceil(QUOTA_BLOCK_BYTES) * QUOTA_BLOCK_BYTES),
                Size::Bytes(hard)
            ));
        }
        if let Some(hard) = limits.hard_inodes().filter(|h| self.used_inodes > *h) {
            over.push(format!(
                "has {} files, over the new limit of {hard}",
                self.used_inodes
            ));
        }
        (!over.is_empty()).then(|| {
            format!(
                "{}: no more writes until under it (deleting files still works)",
                over.join(" and ")
            )
        })
    }
}

/// How an allocation becomes limits: the config's `[quota]` choices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaPolicy {
    /// The soft limit as a percentage of the hard one (1 to 100); `None`:
    /// soft = hard.
    pub soft_percent: Option<u8>,
    /// A hard limit on files and directories; `None`: no inode limit.
    pub inodes: Option<u64>,
}

/// Quota blocks for `size`, rounded up (a limit is never below what was
/// asked); `infinity` is 0, no limit.
pub fn blocks_for(size: Size) -> u64 {
    match size {
        Size::Bytes(bytes) => bytes.div_ceil(QUOTA_BLOCK_BYTES),
        Size::Infinity => 0,
    }
}

impl QuotaPolicy {
    /// The limits for an allocation of `disk`.
    pub fn limits(&self, disk: Size) -> QuotaLimits {
        let block_hard = blocks_for(disk);
        let inode_hard = self.inodes.unwrap_or(0);
        QuotaLimits {
            block_hard,
            block_soft: self.soft(block_hard),
            inode_hard,
            inode_soft: self.soft(inode_hard),
        }
    }

    /// `hard` scaled by the soft percentage; never 0 (no limit) for a real
    /// hard limit.
    fn soft(&self, hard: u64) -> u64 {
        match self.soft_percent {
            Some(p) if hard > 0 => (u128::from(hard) * u128::from(p) / 100).max(1) as u64,
            _ => hard,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_become_1k_blocks_rounded_up() {
        assert_eq!(blocks_for(Size::Bytes(20 << 20)), 20 * 1024);
        assert_eq!(blocks_for(Size::Bytes(1)), 1);
        assert_eq!(blocks_for(Size::Bytes(1024)), 1);
        assert_eq!(blocks_for(Size::Bytes(1025)), 2);
        assert_eq!(blocks_for(Size::Bytes(0)), 0);
        assert_eq!(blocks_for(Size::Bytes(u64::MAX)), u64::MAX / 1024 + 1);
        assert_eq!(blocks_for(Size::Infinity), 0, "infinity is no limit");
    }

    #[test]
    fn soft_limits_are_a_share_of_the_hard_ones() {
        let same = QuotaPolicy::default();
        assert_eq!(
            same.limits(Size::Bytes(20 << 20)),
            QuotaLimits {
                block_hard: 20480,
                block_soft: 20480,
                inode_hard: 0,
                inode_soft: 0,
            }
        );
        let ninety = QuotaPolicy {
            soft_percent: Some(90),
            inodes: Some(100_000),
        };
        assert_eq!(
            ninety.limits(Size::Bytes(20 << 20)),
            QuotaLimits {
                block_hard: 20480,
                block_soft: 18432,
                inode_hard: 100_000,
                inode_soft: 90_000,
            }
        );
        let one = QuotaPolicy {
            soft_percent: Some(1),
            inodes: None,
        };
        assert_eq!(
            one.limits(Size::Bytes(1024)).block_soft,
            1,
            "never 0 for a real limit"
        );
        assert_eq!(ninety.limits(Size::Infinity).block_hard, 0);
        assert_eq!(ninety.limits(Size::Infinity).block_soft, 0);
    }

    #[test]
    fn limits_read_back_in_bytes_with_0_as_none() {
        let limits = QuotaPolicy {
            soft_percent: Some(90),
            inodes: Some(1000),
        }
        .limits(Size::Bytes(20 << 20));
        assert_eq!(limits.hard_bytes(), Some(20 << 20));
        assert_eq!(limits.soft_bytes(), Some(18 << 20));
        assert_eq!(
            limits.settings(),
            ["limit=20M", "soft=18M", "files=1000", "soft-files=900"]
        );
        assert_eq!(QuotaLimits::NONE.hard_bytes(), None);
        assert_eq!(
            QuotaLimits::NONE.settings(),
            ["limit=infinity", "soft=infinity"]
        );
        let huge = QuotaLimits {
            block_hard: u64::MAX,
            ..QuotaLimits::NONE
        };
        assert_eq!(huge.hard_bytes(), Some(u64::MAX), "saturates, no overflow");
    }

    #[test]
    fn usage_over_a_new_hard_limit_is_a_warning() {
        let using_30m = QuotaState {
            limits: QuotaLimits::NONE,
            used_bytes: 30 << 20,
            used_inodes: 5,
        };
        let ten = QuotaPolicy::default().limits(Size::Bytes(10 << 20));
        let warning = using_30m.over(&ten).unwrap();
        assert!(
            warning.contains("30M") && warning.contains("10M"),
            "{warning}"
        );
        assert!(warning.contains("deleting files still works"), "{warning}");
        let forty = QuotaPolicy::default().limits(Size::Bytes(40 << 20));
        assert_eq!(using_30m.over(&forty), None);
        assert_eq!(using_30m.over(&QuotaLimits::NONE), None, "no limit");
        let files = QuotaPolicy {
            soft_percent: None,
            inodes: Some(3),
        }
        .limits(Size::Infinity);
        assert!(using_30m.over(&files).unwrap().contains("5 files"));
    }
}
