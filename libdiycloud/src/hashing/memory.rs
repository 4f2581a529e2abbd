//! Working memory for argon2, backed by transparent huge pages.
//!
//! A verify touches 19 MiB of fresh memory. In a new process (every sshd
//! login) that is ~4,900 page faults, which measured ~10 ms on a 2-core VM:
//! more than half the cost of the hash itself. Mapping the blocks ourselves
//! and asking for huge pages (`MADV_HUGEPAGE`) turns that into ~10 faults.
//! Where huge pages are off or the mapping fails, plain heap memory is used.
//! Both are allocated fallibly: inside sshd an allocation failure must be an
//! error (and a denied login), never an abort of the host process.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::num::NonZeroUsize;
use std::ptr::NonNull;

use argon2::Block;
use nix::sys::mman::{madvise, mmap_anonymous, munmap, MapFlags, MmapAdvise, ProtFlags};

const HUGE_PAGE: usize = 2 << 20;

/// `count` zeroed argon2 blocks.
pub enum BlockMemory {
    Mapped {
        base: NonNull<c_void>,
        len: usize,
        offset: usize,
        count: usize,
    },
    Heap(Vec<Block>),
}

impl BlockMemory {
    /// `None` when the memory cannot be had.
    pub fn new(count: usize) -> Option<Self> {
        // Under one huge page a mapping would only round a small hash up to
        // 2 MiB of zeroing: plain heap memory is cheaper (tests, benchmarks).
        let big = count
            .checked_mul(Block::SIZE)
            .is_none_or(|b| b >= HUGE_PAGE);
        if big {
            if let Some(mapped) = Self::mapped(count) {
                return Some(mapped);
            }
        }
        let mut blocks = Vec::new();
        blocks.try_reserve_exact(count).ok()?;
        blocks.resize(count, Block::new());
        Some(BlockMemory::Heap(blocks))
    }

    fn mapped(count: usize) -> Option<Self> {
        let bytes = count.checked_mul(Block::SIZE)?;
        // One spare huge page so the blocks can start on a 2 MiB boundary.
        let len = bytes.checked_add(HUGE_PAGE)?;
        // SAFETY: a fresh private anonymous mapping at an address of the
        // kernel's choosing; it aliases nothing.
        let base = unsafe {
            mmap_anonymous(
                None,
                NonZeroUsize::new(len)?,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE,
            )
        }
        .ok()?;
        let offset = (HUGE_PAGE - base.as_ptr() as usize % HUGE_PAGE) % HUGE_PAGE;
        // SAFETY: advice on the mapping we own, before anything touched it. A
        // kernel without THP refuses it, which changes nothing: ignore that.
        let _ = unsafe { madvise(base, len, MmapAdvise::MADV_HUGEPAGE) };
        Some(BlockMemory::Mapped {
            base,
            len,
            offset,
            count,
        })
    }
}

impl AsMut<[Block]> for BlockMemory {
    fn as_mut(&mut self) -> &mut [Block] {
        match self {
            BlockMemory::Mapped {
                base,
                offset,
                count,
                ..
            } => {
                // SAFETY: `offset + count * Block::SIZE` lies inside the mapping
                // (one spare huge page was added); the start is 2 MiB aligned,
                // beyond Block's 64-byte alignment; the pages read as zeros,
                // a valid Block; `&mut self` makes this borrow unique.
                unsafe {
                    let start = base.as_ptr().cast::<u8>().add(*offset).cast::<Block>();
                    std::slice::from_raw_parts_mut(start, *count)
                }
            }
            BlockMemory::Heap(blocks) => blocks,
        }
    }
}

impl Drop for BlockMemory {
    fn drop(&mut self) {
        if let BlockMemory::Mapped { base, len, .. } = *self {
            // SAFETY: unmapping exactly the mapping made in `mapped`; no
            // borrow of it can outlive `self`.
            let _ = unsafe { munmap(base, len) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_blocks_are_zeroed_aligned_and_writable() {
        let mut memory = BlockMemory::new(19 * 1024).unwrap();
        assert!(matches!(memory, BlockMemory::Mapped { .. }));
        let blocks = memory.as_mut();
        assert_eq!(blocks.len(), 19 * 1024);
        assert_eq!(blocks.as_ptr() as usize % HUGE_PAGE, 0);
        let last = blocks.len() - 1;
        blocks[last] = Block::new();
        assert!(blocks.iter().all(|b| b.as_ref().iter().all(|w| *w == 0)));
    }

    #[test]
    fn an_impossible_size_is_none_not_an_abort() {
        assert!(BlockMemory::new(usize::MAX / 2).is_none());
        assert!(BlockMemory::new(1 << 40).is_none());
    }
}
