//! Slabs: the memory ferrovent carves frame-stack chunks from, and the rules for giving it back.
//!
//! Invariants (the reasons the tricks are safe; see also `cpython/mod.rs`):
//! - A slab is `SLAB` bytes, mapped by us and aligned to `SLAB`, so `ptr & !(SLAB - 1)` names the only slab a
//!   chunk can be in, and `owners` says whether that slab is ours. Memory outside our slabs is never ours.
//! - Every chunk is either handed out (counted in `live`) or idle (in `warm` or `cold`), never both.
//! - Only idle memory is given back: `madvise(MADV_DONTNEED)` on units (pages, or whole chunks when a chunk spans
//!   pages) whose every chunk is idle, `munmap` on slabs whose every chunk is idle. A chunk that never comes back
//!   to us (freed by another allocator) keeps its slab mapped for good, so we never unmap a hole someone else may
//!   have mapped into since.
//! - Small chunks sit 16 bytes into 1 KiB slots, so none is page-aligned: an allocator that mistakes one for its
//!   own mapping and calls `munmap` on it gets EINVAL and unmaps nothing.
//!
//! Nothing here touches Python; `arena` holds the lock and calls in.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use crate::hashers::AddressMap;

/// Bytes in a slab (and its alignment).
pub const SLAB: usize = 1 << 20;
/// Idle chunks per kind kept resident for the next burst.
const RESERVE: usize = 256;

/// How one kind of chunk is laid out in a slab: one chunk of `size` bytes, `offset` bytes into each `slot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geometry {
    slot: usize,
    offset: usize,
    size: usize,
}

impl Geometry {
    /// The start of the slot `chunk` sits in.
    fn slot_of(self, chunk: usize) -> usize {
        chunk - self.offset
    }
}

/// The kinds of chunk, each with its own slabs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// CPython's 16 KiB frame-stack chunks.
    Frame = 0,
    /// The small root chunks `frame_stack` gives a Greenlet.
    Small = 1,
}

const GEOMETRY: [Geometry; 2] = [
    Geometry { slot: super::FRAME_CHUNK, offset: 0, size: super::FRAME_CHUNK },
    Geometry { slot: 1024, offset: 16, size: super::SMALL_CHUNK },
];

const _: () = {
    let small = GEOMETRY[Kind::Small as usize];
    let frame = GEOMETRY[Kind::Frame as usize];
    // Never page-aligned (any page size >= 1 KiB), and the chunk fits its slot.
    assert!(!small.offset.is_multiple_of(small.slot) && small.offset + small.size <= small.slot);
    // Powers of two, so masks find a chunk's slot, page and slab.
    assert!(SLAB.is_power_of_two() && frame.slot.is_power_of_two() && small.slot.is_power_of_two());
    assert!(SLAB.is_multiple_of(frame.slot) && SLAB.is_multiple_of(small.slot));
};

struct Pool {
    geometry: Geometry,
    /// Idle chunks that may be resident, most recently freed last.
    warm: Vec<usize>,
    /// Idle chunks already given back (or never touched).
    cold: Vec<usize>,
    /// Chunks handed out, and the most there were since the last trim.
    live: usize,
    peak: usize,
}

impl Pool {
    const fn new(geometry: Geometry) -> Self {
        Self { geometry, warm: Vec::new(), cold: Vec::new(), live: 0, peak: 0 }
    }

    /// Whether enough chunks went idle since the last trim (at least half the peak) that a pass is worth it.
    fn burst_ended(&self) -> bool {
        let idle_since_peak = self.peak - self.live;
        idle_since_peak > RESERVE && idle_since_peak >= self.peak / 2
    }
}

/// What a trim gives back, worked out under the lock and done after it (`Release::run`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Release {
    /// Slab bases.
    unmap: Vec<usize>,
    /// Page-aligned (start, length) ranges.
    advise: Vec<(usize, usize)>,
}

impl Release {
    /// Does the syscalls. Failures are ignored: the memory then stays resident, which is all a failure costs.
    pub fn run(self) {
        for base in self.unmap {
            // SAFETY: `base` is a slab we mapped, every chunk of it idle and now forgotten by `Slabs`.
            unsafe { libc::munmap(base as *mut libc::c_void, SLAB) };
        }
        for (start, len) in self.advise {
            // SAFETY: whole pages of our own slabs whose every chunk is idle; they stay mapped (zero-filled on
            // next touch), and nothing reads an idle chunk's old contents.
            unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
        }
    }
}

pub struct Slabs {
    pools: [Pool; 2],
    owners: AddressMap<usize, Kind>,
    /// The slab mapped last: the next goes just below it if it can.
    last_slab: Option<usize>,
}

impl Slabs {
    pub const fn new() -> Self {
        Self {
            pools: [Pool::new(GEOMETRY[Kind::Frame as usize]), Pool::new(GEOMETRY[Kind::Small as usize])],
            owners: HashMap::with_hasher(BuildHasherDefault::new()),
            last_slab: None,
        }
    }

    /// A chunk of `kind`, or None if no slab could be mapped.
    pub fn take(&mut self, kind: Kind) -> Option<usize> {
        let pool = &mut self.pools[kind as usize];
        let chunk = match pool.warm.pop().or_else(|| pool.cold.pop()) {
            Some(chunk) => chunk,
            None => {
                let base = map_slab(self.last_slab)?;
                self.last_slab = Some(base);
                self.owners.insert(base, kind);
                let Geometry { slot, offset, .. } = pool.geometry;
                pool.cold.extend((1..SLAB / slot).rev().map(|i| base + i * slot + offset));
                base + offset
            }
        };
        pool.live += 1;
        pool.peak = pool.peak.max(pool.live);
        Some(chunk)
    }

    /// Takes back a chunk freed with `size`. False if `ptr` is not in one of our slabs: someone else's memory.
    /// A pointer in our slabs that is not a chunk of that size is left alone (true): never recycled, never freed.
    pub fn give_back(&mut self, ptr: usize, size: usize) -> bool {
        let base = ptr & !(SLAB - 1);
        let Some(&kind) = self.owners.get(&base) else { return false };
        let pool = &mut self.pools[kind as usize];
        let Geometry { slot, offset, size: chunk_size } = pool.geometry;
        if size == chunk_size && (ptr - base) % slot == offset {
            pool.warm.push(ptr);
            pool.live = pool.live.saturating_sub(1);
        }
        true
    }

    /// Whether a trim would give anything back: cheap, checked every time the loop is about to block.
    pub fn trim_due(&self) -> bool {
        self.pools.iter().any(Pool::burst_ended)
    }

    /// After a burst: plans giving back every idle chunk but the `RESERVE` most recently freed of each kind, and
    /// forgets the slabs it will unmap. `page` is the system page size.
    pub fn plan_trim(&mut self, page: usize) -> Release {
        let mut release = Release::default();
        for kind in [Kind::Frame, Kind::Small] {
            let pool = &mut self.pools[kind as usize];
            if !pool.burst_ended() {
                continue;
            }
            pool.peak = pool.live;
            let keep_from = pool.warm.len().saturating_sub(RESERVE);
            let mut spare: Vec<(usize, bool)> = pool.warm.drain(..keep_from).map(|c| (c, true)).collect();
            spare.extend(pool.cold.drain(..).map(|c| (c, false)));
            spare.sort_unstable();
            let geometry = pool.geometry;
            for group in spare.chunk_by(|a, b| a.0 & !(SLAB - 1) == b.0 & !(SLAB - 1)) {
                let base = group[0].0 & !(SLAB - 1);
                if group.len() == SLAB / geometry.slot {
                    release.unmap.push(base);
                    self.owners.remove(&base);
                    continue;
                }
                plan_advice(geometry, page, group, &mut release.advise);
                pool.cold.extend(group.iter().map(|&(chunk, _)| chunk));
            }
        }
        release
    }

    #[cfg(test)]
    fn counts(&self, kind: Kind) -> (usize, usize, usize) {
        let pool = &self.pools[kind as usize];
        (pool.live, pool.warm.len(), pool.cold.len())
    }
}

/// Adds the units of `group` (idle chunks of one slab, sorted) that are wholly idle and were touched since the
/// last trim, merging neighbours into one range.
fn plan_advice(geometry: Geometry, page: usize, group: &[(usize, bool)], advise: &mut Vec<(usize, usize)>) {
    let unit = geometry.slot.max(page);
    let unit_of = |chunk: usize| geometry.slot_of(chunk) & !(unit - 1);
    for run in group.chunk_by(|a, b| unit_of(a.0) == unit_of(b.0)) {
        if run.len() != unit / geometry.slot || !run.iter().any(|&(_, warm)| warm) {
            continue;
        }
        let start = unit_of(run[0].0);
        match advise.last_mut() {
            Some((last, len)) if *last + *len == start => *len += unit,
            _ => advise.push((start, unit)),
        }
    }
}

/// Maps one slab aligned to its size; None if the system refuses. It first asks for the space just below the last
/// slab (where the kernel puts new mappings anyway): consecutive slabs then merge into one mapping, so a burst
/// costs few of the process's `vm.max_map_count` mappings.
fn map_slab(last: Option<usize>) -> Option<usize> {
    if let Some(hint) = last.and_then(|base| base.checked_sub(SLAB)) {
        let raw = map_anonymous(hint, SLAB)?;
        if raw.is_multiple_of(SLAB) {
            return Some(raw);
        }
        unmap(raw, SLAB);
    }
    let span = 2 * SLAB;
    let raw = map_anonymous(0, span)?;
    let base = raw.next_multiple_of(SLAB);
    unmap(raw, base - raw);
    unmap(base + SLAB, raw + span - (base + SLAB));
    Some(base)
}

/// A fresh anonymous read-write mapping of `len` bytes, at `hint` if that space is free, else anywhere.
fn map_anonymous(hint: usize, len: usize) -> Option<usize> {
    // SAFETY: an anonymous private mapping; without MAP_FIXED the hint never replaces an existing mapping.
    let raw = unsafe {
        libc::mmap(
            hint as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    (raw != libc::MAP_FAILED).then_some(raw as usize)
}

/// Unmaps part of a mapping `map_slab` just made and will not use.
fn unmap(start: usize, len: usize) {
    if len > 0 {
        // SAFETY: `start..start + len` is part of a fresh mapping of ours that nothing refers to.
        unsafe { libc::munmap(start as *mut libc::c_void, len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: usize = 4096;

    fn resident(start: usize, len: usize) -> usize {
        let mut vec = vec![0u8; len.div_ceil(PAGE)];
        // SAFETY: `start` is page-aligned inside a mapping we own; `vec` has one byte per page.
        assert_eq!(unsafe { libc::mincore(start as *mut libc::c_void, len, vec.as_mut_ptr()) }, 0);
        vec.iter().filter(|&&b| b & 1 == 1).count()
    }

    fn touch(chunk: usize) {
        // SAFETY: a chunk we were just handed, at least 8 bytes of it writable.
        unsafe { (chunk as *mut u64).write(1) };
    }

    #[test]
    fn small_chunks_are_never_page_aligned_and_are_recycled() {
        let mut slabs = Slabs::new();
        let chunks: Vec<usize> = (0..3000).map(|_| slabs.take(Kind::Small).unwrap()).collect();
        assert!(chunks.iter().all(|c| c % PAGE != 0 && c % 1024 == 16));
        assert!(slabs.give_back(chunks[5], SMALL_SIZE));
        assert_eq!(slabs.take(Kind::Small), Some(chunks[5]), "the most recently freed chunk comes back first");
        assert!(!slabs.give_back(0x1000, SMALL_SIZE), "memory outside our slabs is not ours");
    }

    const SMALL_SIZE: usize = super::super::SMALL_CHUNK;
    const FRAME: usize = super::super::FRAME_CHUNK;

    #[test]
    fn a_pointer_in_our_slab_of_the_wrong_shape_is_kept_not_recycled() {
        let mut slabs = Slabs::new();
        let chunk = slabs.take(Kind::Frame).unwrap();
        assert!(slabs.give_back(chunk + 8, FRAME));
        assert!(slabs.give_back(chunk, 2 * FRAME));
        assert_eq!(slabs.counts(Kind::Frame), (1, 0, SLAB / FRAME - 1));
    }

    #[test]
    fn after_a_burst_idle_slabs_are_unmapped_and_idle_pages_advised_away() {
        let mut slabs = Slabs::new();
        let per_slab = SLAB / FRAME;
        let chunks: Vec<usize> = (0..8 * per_slab).map(|_| slabs.take(Kind::Frame).unwrap()).collect();
        chunks.iter().copied().for_each(touch);
        assert!(!slabs.trim_due());
        // The first chunk stays live; the rest go idle in order, so the last RESERVE freed are the warm reserve.
        chunks[1..].iter().for_each(|&c| assert!(slabs.give_back(c, FRAME)));
        assert!(slabs.trim_due());
        let release = slabs.plan_trim(PAGE);
        assert!(!slabs.trim_due(), "the trim resets the peak");
        let slab_of = |c: usize| c & !(SLAB - 1);
        let mut expected: Vec<usize> = chunks[per_slab..4 * per_slab].iter().map(|&c| slab_of(c)).collect();
        expected.dedup();
        let mut unmapped = release.unmap.clone();
        unmapped.sort_unstable();
        expected.sort_unstable();
        assert_eq!(unmapped, expected, "wholly idle slabs outside the reserve are unmapped");
        let first = slab_of(chunks[0]);
        assert_eq!(release.advise, vec![(first + FRAME, SLAB - FRAME)], "the live chunk's slab keeps that chunk");
        release.run();
        assert_eq!(resident(first, SLAB), 1, "only the live chunk's touched page stays");
        assert_eq!(slabs.counts(Kind::Frame), (1, RESERVE, per_slab - 1));
        assert!(!slabs.give_back(chunks[per_slab], FRAME), "an unmapped slab is forgotten");
        // New slabs are mapped as needed.
        let again: Vec<usize> = (0..8 * per_slab).map(|_| slabs.take(Kind::Frame).unwrap()).collect();
        again.iter().copied().for_each(touch);
    }

    #[test]
    fn small_chunks_are_advised_away_only_when_their_whole_page_is_idle() {
        let mut slabs = Slabs::new();
        let chunks: Vec<usize> = (0..3 * 1024).map(|_| slabs.take(Kind::Small).unwrap()).collect();
        chunks.iter().copied().for_each(touch);
        // Keep one chunk live in every other page of the first slab.
        let first_slab = chunks[0] & !(SLAB - 1);
        let live: Vec<usize> =
            chunks.iter().copied().filter(|c| c % (2 * PAGE) < 1024 && c & !(SLAB - 1) == first_slab).collect();
        for &c in &chunks {
            if !live.contains(&c) {
                assert!(slabs.give_back(c, SMALL_SIZE));
            }
        }
        let release = slabs.plan_trim(PAGE);
        assert_eq!(release.unmap.len(), 1, "the second slab is wholly idle (the third holds the warm reserve)");
        let in_first = release.advise.iter().filter(|r| r.0 & !(SLAB - 1) == first_slab);
        assert!(
            in_first.map(|r| r.1).eq(std::iter::repeat_n(PAGE, SLAB / PAGE / 2)),
            "every other page, none adjacent"
        );
        for &(start, len) in &release.advise {
            assert!(live.iter().all(|&c| c < start || c >= start + len), "no live chunk's page is advised away");
        }
        release.run();
        live.iter().for_each(|&c| assert_eq!(resident(c & !(PAGE - 1), PAGE), 1));
    }
}
