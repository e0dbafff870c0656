//! The timer heap: a min-heap keyed by (deadline, sequence) with O(1) lazy cancellation.
//!
//! A timer lives in `live` from `insert` until it is cancelled or its action is taken. The heap keeps only keys;
//! a key whose timer is gone is skipped when it reaches the top. Expiry is two steps so that a timer that has
//! fired but whose action has not run yet can still be cancelled: `expire` hands out ids, `take` the action.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::hashers::IntMap;

/// Nanoseconds on the loop's monotonic clock.
pub type Nanos = u64;

/// Identifies one timer for cancellation; never reused within a heap.
pub type TimerId = u64;

struct Timer<A> {
    action: A,
    referenced: bool,
    /// Handed out by `expire`, action not yet taken: libev's "pending".
    fired: bool,
}

pub struct TimerHeap<A> {
    heap: BinaryHeap<Reverse<(Nanos, TimerId)>>,
    live: IntMap<TimerId, Timer<A>>,
    next_id: TimerId,
    referenced: usize,
}

impl<A> Default for TimerHeap<A> {
    fn default() -> Self {
        Self { heap: BinaryHeap::new(), live: IntMap::default(), next_id: 1, referenced: 0 }
    }
}

impl<A> TimerHeap<A> {
    /// Schedules `action` at `deadline`. Timers with equal deadlines expire in insertion order.
    pub fn insert(&mut self, deadline: Nanos, action: A, referenced: bool) -> TimerId {
        let id = self.next_id;
        self.next_id += 1;
        self.heap.push(Reverse((deadline, id)));
        self.live.insert(id, Timer { action, referenced, fired: false });
        if referenced {
            self.referenced += 1;
        }
        id
    }

    /// Cancels a timer whose action has not been taken; returns the action, or None if it was already gone.
    pub fn cancel(&mut self, id: TimerId) -> Option<A> {
        self.take(id)
    }

    /// Takes the action of a timer (normally one that `expire` returned). None if it was cancelled meanwhile.
    pub fn take(&mut self, id: TimerId) -> Option<A> {
        let timer = self.live.remove(&id)?;
        if timer.referenced {
            self.referenced -= 1;
        }
        self.compact();
        Some(timer.action)
    }

    /// Cancels every timer whose action `unwanted` picks; returns their actions.
    pub fn cancel_where(&mut self, unwanted: impl Fn(&A) -> bool) -> Vec<A> {
        let ids: Vec<TimerId> = self.live.iter().filter(|(_, t)| unwanted(&t.action)).map(|(&id, _)| id).collect();
        ids.into_iter().filter_map(|id| self.cancel(id)).collect()
    }

    /// Whether a timer is still pending (not cancelled, action not taken).
    pub fn is_pending(&self, id: TimerId) -> bool {
        self.live.contains_key(&id)
    }

    /// Whether a timer has expired and its action is still to be taken.
    pub fn is_fired(&self, id: TimerId) -> bool {
        self.live.get(&id).is_some_and(|t| t.fired)
    }

    /// Pops the ids of every live timer whose deadline is at or before `now`, earliest first.
    pub fn expire(&mut self, now: Nanos, out: &mut Vec<TimerId>) {
        while let Some(&Reverse((deadline, id))) = self.heap.peek() {
            if deadline > now {
                break;
            }
            self.heap.pop();
            if let Some(timer) = self.live.get_mut(&id) {
                timer.fired = true;
                out.push(id);
            }
        }
    }

    /// The earliest deadline among live timers whose key is still in the heap.
    pub fn next_deadline(&mut self) -> Option<Nanos> {
        while let Some(&Reverse((deadline, id))) = self.heap.peek() {
            if self.live.contains_key(&id) {
                return Some(deadline);
            }
            self.heap.pop();
        }
        None
    }

    /// The actions of all pending timers, in no particular order.
    pub fn actions(&self) -> impl Iterator<Item = &A> {
        self.live.values().map(|t| &t.action)
    }

    /// Number of pending timers that keep the loop alive.
    pub fn referenced(&self) -> usize {
        self.referenced
    }

    /// Number of pending timers, referenced or not.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Rebuilds the heap when cancelled keys dominate it, so a cancel-heavy workload stays bounded in memory.
    fn compact(&mut self) {
        if self.heap.len() > 1024 && self.heap.len() > 4 * self.live.len() {
            let live = &self.live;
            self.heap.retain(|Reverse((_, id))| live.contains_key(id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expire_all(heap: &mut TimerHeap<&'static str>, now: Nanos) -> Vec<&'static str> {
        let mut ids = Vec::new();
        heap.expire(now, &mut ids);
        ids.into_iter().filter_map(|id| heap.take(id)).collect()
    }

    #[test]
    fn expires_in_deadline_order_and_fifo_for_ties() {
        let mut heap = TimerHeap::default();
        heap.insert(30, "c", true);
        heap.insert(10, "a1", true);
        heap.insert(20, "b", true);
        heap.insert(10, "a2", true);
        assert_eq!(heap.next_deadline(), Some(10));
        assert_eq!(expire_all(&mut heap, 20), vec!["a1", "a2", "b"]);
        assert_eq!(heap.next_deadline(), Some(30));
        assert_eq!(expire_all(&mut heap, 29), Vec::<&str>::new());
        assert_eq!(expire_all(&mut heap, 30), vec!["c"]);
        assert_eq!(heap.next_deadline(), None);
        assert_eq!(heap.len(), 0);
    }

    #[test]
    fn cancelled_timers_never_fire_and_stop_counting() {
        let mut heap = TimerHeap::default();
        let a = heap.insert(10, "a", true);
        let b = heap.insert(20, "b", true);
        assert_eq!(heap.referenced(), 2);
        assert_eq!(heap.cancel(a), Some("a"));
        assert_eq!(heap.cancel(a), None, "cancel is idempotent");
        assert_eq!(heap.referenced(), 1);
        assert_eq!(heap.next_deadline(), Some(20));
        assert_eq!(expire_all(&mut heap, 100), vec!["b"]);
        assert!(!heap.is_pending(b));
    }

    #[test]
    fn fired_but_untaken_timer_can_still_be_cancelled() {
        let mut heap = TimerHeap::default();
        let id = heap.insert(5, "x", true);
        let mut ids = Vec::new();
        heap.expire(5, &mut ids);
        assert_eq!(ids, vec![id]);
        assert!(heap.is_pending(id) && heap.is_fired(id));
        assert_eq!(heap.cancel(id), Some("x"));
        assert!(!heap.is_fired(id));
        assert_eq!(heap.take(id), None);
    }

    #[test]
    fn a_timer_is_fired_only_once_expired() {
        let mut heap = TimerHeap::default();
        let id = heap.insert(5, "x", true);
        assert!(!heap.is_fired(id));
        heap.expire(4, &mut Vec::new());
        assert!(!heap.is_fired(id));
        heap.expire(5, &mut Vec::new());
        assert!(heap.is_fired(id));
        heap.take(id);
        assert!(!heap.is_fired(id));
    }

    #[test]
    fn unreferenced_timers_do_not_count() {
        let mut heap = TimerHeap::default();
        let id = heap.insert(5, "x", false);
        heap.insert(6, "y", true);
        assert_eq!((heap.referenced(), heap.len()), (1, 2));
        heap.cancel(id);
        assert_eq!((heap.referenced(), heap.len()), (1, 1));
    }

    #[test]
    fn cancel_where_removes_only_the_picked_timers() {
        let mut heap = TimerHeap::default();
        heap.insert(5, "drop me", true);
        let kept = heap.insert(6, "keep", false);
        heap.insert(7, "drop me too", false);
        let mut cancelled = heap.cancel_where(|action| action.starts_with("drop"));
        cancelled.sort_unstable();
        assert_eq!(cancelled, vec!["drop me", "drop me too"]);
        assert_eq!((heap.referenced(), heap.len()), (0, 1));
        assert!(heap.is_pending(kept));
        assert_eq!(expire_all(&mut heap, 100), vec!["keep"]);
    }

    #[test]
    fn heavy_cancellation_keeps_heap_small() {
        let mut heap = TimerHeap::default();
        for i in 0..10_000 {
            let id = heap.insert(1_000 + i, i, true);
            heap.cancel(id);
        }
        assert!(heap.heap.len() <= 4 * 1024 + 1, "heap holds {} dead keys", heap.heap.len());
        assert_eq!(heap.next_deadline(), None);
    }
}
