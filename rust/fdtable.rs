//! The per-fd table: registration state and the greenlets waiting on each direction.
//!
//! The poller is edge-triggered: a wait always waits for the next edge, and an edge wakes every waiter of its
//! direction to retry. The one readiness kept is "drained": the socket layer saw the fd's receive queue empty (a
//! short read) since the last read edge, so its next read would fail with EAGAIN and may park at once; any read
//! edge, which the kernel reports for every arrival after that read, clears it. `close` forgets everything about
//! the fd, so a reused fd number starts clean.

use crate::poller::Readiness;

/// Which way a waiter waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Read,
    Write,
}

struct Waiting<W> {
    waiter: W,
    referenced: bool,
}

struct FdSlot<W> {
    registered: bool,
    /// Registered by an owner that promises to call `close` before closing the fd (the socket layer). Other
    /// registrations end with their last wait, so an fd closed behind the loop's back leaves nothing stale.
    persistent: bool,
    /// The receive queue was seen empty after the last read edge (see the module comment).
    drained: bool,
    /// The poller reported urgent data (a read may stop at its mark with more queued behind it) or the end or
    /// failure of the stream (the next read returns at once, with no edge to come): from then on, for the rest of
    /// the fd's life, a short read says nothing about the next one.
    reads_settled: bool,
    readers: Vec<Waiting<W>>,
    writers: Vec<Waiting<W>>,
}

impl<W> Default for FdSlot<W> {
    fn default() -> Self {
        Self {
            registered: false,
            persistent: false,
            drained: false,
            reads_settled: false,
            readers: Vec::new(),
            writers: Vec::new(),
        }
    }
}

impl<W> FdSlot<W> {
    fn queue(&mut self, direction: Direction) -> &mut Vec<Waiting<W>> {
        match direction {
            Direction::Read => &mut self.readers,
            Direction::Write => &mut self.writers,
        }
    }
}

pub struct FdTable<W> {
    slots: Vec<FdSlot<W>>,
    referenced: usize,
    waiting: usize,
}

impl<W> Default for FdTable<W> {
    fn default() -> Self {
        Self { slots: Vec::new(), referenced: 0, waiting: 0 }
    }
}

impl<W> FdTable<W> {
    fn slot_mut(&mut self, fd: usize) -> &mut FdSlot<W> {
        if fd >= self.slots.len() {
            self.slots.resize_with(fd + 1, FdSlot::default);
        }
        &mut self.slots[fd]
    }

    /// Whether the fd has a poller registration.
    pub fn is_registered(&self, fd: usize) -> bool {
        self.slots.get(fd).is_some_and(|s| s.registered)
    }

    /// Records that the fd is now registered with the poller; once persistent, it stays so until `close`.
    pub fn mark_registered(&mut self, fd: usize, persistent: bool) {
        let slot = self.slot_mut(fd);
        slot.registered = true;
        slot.persistent |= persistent;
    }

    /// Ends a registration nobody promised to close, once its last waiter is gone. True if the caller must now
    /// deregister the fd from the poller.
    pub fn release_if_transient(&mut self, fd: usize) -> bool {
        let Some(slot) = self.slots.get_mut(fd) else { return false };
        if slot.registered && !slot.persistent && slot.readers.is_empty() && slot.writers.is_empty() {
            slot.registered = false;
            return true;
        }
        false
    }

    /// Whether anyone waits on the fd in `direction`.
    pub fn has_waiters(&self, fd: usize, direction: Direction) -> bool {
        self.slots.get(fd).is_some_and(|s| match direction {
            Direction::Read => !s.readers.is_empty(),
            Direction::Write => !s.writers.is_empty(),
        })
    }

    /// Records a short read: the receive queue was empty just now. Kept only for a persistent registration, which
    /// already existed when the read was made (nothing runs between the read and this call), so every later
    /// arrival is an edge still to come.
    pub fn mark_drained(&mut self, fd: usize) {
        if let Some(slot) = self.slots.get_mut(fd) {
            slot.drained = slot.registered && slot.persistent && !slot.reads_settled;
        }
    }

    /// Whether a read of the fd would fail with EAGAIN (see `mark_drained`).
    pub fn is_drained(&self, fd: usize) -> bool {
        self.slots.get(fd).is_some_and(|s| s.drained)
    }

    /// Parks a waiter on the fd until the next edge in `direction`.
    pub fn add_waiter(&mut self, fd: usize, direction: Direction, waiter: W, referenced: bool) {
        self.slot_mut(fd).queue(direction).push(Waiting { waiter, referenced });
        self.waiting += 1;
        if referenced {
            self.referenced += 1;
        }
    }

    /// Removes the first waiter matching `is_it`; returns it if it was still there.
    pub fn remove_waiter(&mut self, fd: usize, direction: Direction, is_it: impl Fn(&W) -> bool) -> Option<W> {
        let queue = self.slots.get_mut(fd)?.queue(direction);
        let index = queue.iter().position(|w| is_it(&w.waiter))?;
        let removed = queue.remove(index);
        self.forget(&removed);
        Some(removed.waiter)
    }

    /// Applies a poller event: takes every waiter of each ready direction.
    pub fn on_event(&mut self, event: Readiness, woken: &mut Vec<W>) {
        let Some(slot) = self.slots.get_mut(event.fd) else { return };
        let (readable, writable) = (event.readable, event.writable);
        slot.reads_settled |= event.reads_settled;
        let mut taken = Vec::new();
        if readable {
            slot.drained = false;
            taken.append(&mut slot.readers);
        }
        if writable {
            taken.append(&mut slot.writers);
        }
        for waiting in taken {
            self.forget(&waiting);
            woken.push(waiting.waiter);
        }
    }

    /// Takes every waiter of the fd, both directions, leaving its registration as it is.
    pub fn take_waiters(&mut self, fd: usize, woken: &mut Vec<W>) {
        let Some(slot) = self.slots.get_mut(fd) else { return };
        let mut taken = std::mem::take(&mut slot.readers);
        taken.append(&mut slot.writers);
        for waiting in taken {
            self.forget(&waiting);
            woken.push(waiting.waiter);
        }
    }

    /// Forgets the fd: takes all its waiters and drops its registration. Returns whether it was registered.
    pub fn close(&mut self, fd: usize, woken: &mut Vec<W>) -> bool {
        let Some(slot) = self.slots.get_mut(fd) else { return false };
        let was_registered = std::mem::replace(&mut slot.registered, false);
        (slot.persistent, slot.drained, slot.reads_settled) = (false, false, false);
        self.take_waiters(fd, woken);
        was_registered
    }

    /// Marks every fd unregistered, keeping its waiters (the poller was rebuilt after fork).
    pub fn forget_registrations(&mut self) {
        for slot in &mut self.slots {
            (slot.registered, slot.drained) = (false, false);
        }
    }

    /// Fds that have waiters, for re-registration after the poller is rebuilt.
    pub fn fds_with_waiters(&self) -> Vec<usize> {
        let busy = |s: &FdSlot<W>| !s.readers.is_empty() || !s.writers.is_empty();
        self.slots.iter().enumerate().filter(|(_, s)| busy(s)).map(|(fd, _)| fd).collect()
    }

    /// Every parked waiter, in no particular order.
    pub fn waiters(&self) -> impl Iterator<Item = &W> {
        self.slots.iter().flat_map(|s| s.readers.iter().chain(&s.writers)).map(|w| &w.waiter)
    }

    /// Fds registered with the poller, counted on demand (for `python -m ferrovent info`, not the hot path).
    pub fn registered(&self) -> usize {
        self.slots.iter().filter(|s| s.registered).count()
    }

    /// Waiters that keep the loop alive.
    pub fn referenced(&self) -> usize {
        self.referenced
    }

    /// All parked waiters.
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    fn forget(&mut self, waiting: &Waiting<W>) {
        self.waiting -= 1;
        if waiting.referenced {
            self.referenced -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(fd: usize, readable: bool, writable: bool) -> Readiness {
        Readiness { fd, readable, writable, reads_settled: false }
    }

    #[test]
    fn event_wakes_only_the_ready_direction() {
        let mut table = FdTable::default();
        table.add_waiter(5, Direction::Read, 1, true);
        table.add_waiter(5, Direction::Write, 2, true);
        table.add_waiter(5, Direction::Read, 3, false);
        assert_eq!((table.waiting(), table.referenced()), (3, 2));
        let mut woken = Vec::new();
        table.on_event(event(5, true, false), &mut woken);
        assert_eq!(woken, vec![1, 3]);
        assert!(!table.has_waiters(5, Direction::Read));
        assert!(table.has_waiters(5, Direction::Write));
        assert_eq!((table.waiting(), table.referenced()), (1, 1));
    }

    #[test]
    fn a_wait_after_an_edge_waits_for_the_next_one() {
        let mut table = FdTable::default();
        let mut woken = Vec::new();
        table.add_waiter(3, Direction::Read, 1, true);
        table.on_event(event(3, true, true), &mut woken);
        assert_eq!(woken, vec![1]);
        table.add_waiter(3, Direction::Read, 2, true);
        assert_eq!(table.waiting(), 1, "the edge already seen does not wake a later waiter");
        woken.clear();
        table.on_event(event(3, true, false), &mut woken);
        assert_eq!(woken, vec![2]);
    }

    #[test]
    fn close_wakes_everyone_and_reused_fd_starts_clean() {
        let mut table = FdTable::default();
        table.mark_registered(7, true);
        table.add_waiter(7, Direction::Read, 10, true);
        table.add_waiter(7, Direction::Write, 11, true);
        let mut woken = Vec::new();
        assert!(table.close(7, &mut woken));
        assert_eq!(woken, vec![10, 11]);
        assert!(!table.is_registered(7));
        assert_eq!((table.waiting(), table.referenced()), (0, 0));
        // The reused number has no waiters: an event on it wakes nobody from before.
        woken.clear();
        table.on_event(event(7, true, true), &mut woken);
        assert!(woken.is_empty());
    }

    #[test]
    fn transient_registrations_end_with_their_last_waiter() {
        let mut table = FdTable::default();
        table.mark_registered(9, false);
        table.add_waiter(9, Direction::Read, 1, true);
        assert!(!table.release_if_transient(9), "still waited on");
        table.remove_waiter(9, Direction::Read, |w| *w == 1);
        assert!(table.release_if_transient(9));
        assert!(!table.is_registered(9));
        table.mark_registered(9, true);
        table.mark_registered(9, false);
        assert!(!table.release_if_transient(9), "persistent stays until close");
        let mut woken = Vec::new();
        table.close(9, &mut woken);
        table.mark_registered(9, false);
        assert!(table.release_if_transient(9), "close forgets persistence");
    }

    #[test]
    fn remove_waiter_is_idempotent() {
        let mut table = FdTable::default();
        table.add_waiter(2, Direction::Read, 1, true);
        table.add_waiter(2, Direction::Read, 2, true);
        assert_eq!(table.remove_waiter(2, Direction::Read, |w| *w == 1), Some(1));
        assert_eq!(table.remove_waiter(2, Direction::Read, |w| *w == 1), None);
        assert_eq!(table.remove_waiter(99, Direction::Read, |w| *w == 1), None);
        assert_eq!((table.waiting(), table.referenced()), (1, 1));
    }

    #[test]
    fn events_for_unknown_fds_are_ignored() {
        let mut table: FdTable<u32> = FdTable::default();
        let mut woken = Vec::new();
        table.on_event(event(1000, true, true), &mut woken);
        assert!(woken.is_empty());
        assert!(!table.close(1000, &mut woken));
    }

    #[test]
    fn drained_lasts_until_the_next_read_edge_of_a_persistent_registration() {
        let mut table: FdTable<u32> = FdTable::default();
        let mut woken = Vec::new();
        table.mark_drained(6);
        assert!(!table.is_drained(6), "an unregistered fd hears of no edge");
        table.mark_registered(6, false);
        table.mark_drained(6);
        assert!(!table.is_drained(6), "a transient registration may end before the next edge");
        table.mark_registered(6, true);
        table.mark_drained(6);
        assert!(table.is_drained(6));
        table.on_event(event(6, false, true), &mut woken);
        assert!(table.is_drained(6), "a write edge says nothing of the receive queue");
        table.on_event(event(6, true, false), &mut woken);
        assert!(!table.is_drained(6), "a read edge with nobody waiting still counts");
        table.mark_drained(6);
        table.close(6, &mut woken);
        assert!(!table.is_drained(6));
    }

    #[test]
    fn urgent_data_or_the_streams_end_ends_the_drained_record_for_the_fds_life() {
        let mut table: FdTable<u32> = FdTable::default();
        let mut woken = Vec::new();
        table.mark_registered(8, true);
        table.on_event(Readiness { reads_settled: true, ..event(8, true, false) }, &mut woken);
        table.mark_drained(8);
        assert!(!table.is_drained(8), "a read may have stopped at the urgent mark, or the next returns at once");
        table.close(8, &mut woken);
        table.mark_registered(8, true);
        table.mark_drained(8);
        assert!(table.is_drained(8), "a reused fd number starts clean");
    }

    #[test]
    fn registrations_are_forgotten_but_waiters_kept() {
        let mut table = FdTable::default();
        table.mark_registered(4, true);
        table.add_waiter(4, Direction::Read, 1, true);
        table.forget_registrations();
        assert!(!table.is_registered(4));
        assert_eq!(table.fds_with_waiters(), vec![4]);
    }
}
