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
}
