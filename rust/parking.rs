//! The parking lot: which greenlets are parked in the loop, under which token, and what they wait on.
//!
//! Every wait gets a fresh token. A wake carries the token it was made for, and is delivered only while the
//! greenlet is still parked under that token; so a wake that arrives after the greenlet was resumed another way
//! (a timeout, a kill, an earlier wake) is a harmless no-op.

use std::collections::hash_map::Entry;
use std::num::NonZeroU64;

use crate::fdtable::Direction;
use crate::hashers::AddressMap;
use crate::timers::TimerId;

/// Table capacity below which a sparse parking lot is not worth shrinking.
const SPARSE_FLOOR: usize = 4096;

/// What one parked greenlet waits for, beyond a plain wake.
///
/// One is kept per parked greenlet (every idle connection's handler), so it is packed into 24 bytes (48 with
/// plain options): a timer id is never 0, and an fd that reaches a wait is a registered C int.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parked {
    pub token: u64,
    timer: Option<NonZeroU64>,
    fd: Option<(u32, Direction)>,
}

impl Parked {
    /// A wait under `token`, on `fd` in a direction if given (an fd the poller registered), with no timer yet.
    pub fn new(token: u64, fd: Option<(usize, Direction)>) -> Self {
        let fd = fd.and_then(|(fd, direction)| {
            let packed = u32::try_from(fd).ok();
            debug_assert!(packed.is_some(), "fd {fd} was registered with the poller, so it is a C int");
            packed.map(|fd| (fd, direction))
        });
        Self { token, timer: None, fd }
    }

    /// The timer that ends the wait, if any.
    pub fn timer(&self) -> Option<TimerId> {
        self.timer.map(NonZeroU64::get)
    }

    /// The fd (and direction) waited on, if any.
    pub fn fd(&self) -> Option<(usize, Direction)> {
        self.fd.map(|(fd, direction)| (fd as usize, direction))
    }
}

#[derive(Default)]
pub struct ParkingLot {
    parked: AddressMap<usize, Parked>,
    last_token: u64,
}

impl ParkingLot {
    /// A token no earlier wait has used.
    pub fn new_token(&mut self) -> u64 {
        self.last_token += 1;
        self.last_token
    }

    /// Records that the greenlet at `address` is parked.
    pub fn park(&mut self, address: usize, parked: Parked) {
        self.parked.insert(address, parked);
    }

    /// The token the greenlet is parked under, if it is parked.
    pub fn token_of(&self, address: usize) -> Option<u64> {
        self.parked.get(&address).map(|p| p.token)
    }

    /// Unparks the greenlet if it is parked under `token`; returns what it waited on, for cleanup.
    pub fn claim(&mut self, address: usize, token: u64) -> Option<Parked> {
        let claimed = match self.parked.entry(address) {
            Entry::Occupied(parked) if parked.get().token == token => Some(parked.remove()),
            _ => None,
        };
        self.shrink_when_sparse();
        claimed
    }

    /// Unparks the greenlet whatever its token.
    pub fn unpark(&mut self, address: usize) -> Option<Parked> {
        let unparked = self.parked.remove(&address);
        self.shrink_when_sparse();
        unparked
    }

    /// Gives back the table a burst of parked greenlets grew, once most of them are gone (amortised O(1): the
    /// table must then shrink 4x again before the next rehash).
    fn shrink_when_sparse(&mut self) {
        if self.parked.capacity() > SPARSE_FLOOR && self.parked.len() * 8 < self.parked.capacity() {
            self.parked.shrink_to(self.parked.len() * 2);
        }
    }

    /// Unparks every greenlet; returns what they waited on, for cleanup.
    pub fn take_all(&mut self) -> Vec<Parked> {
        std::mem::take(&mut self.parked).into_values().collect()
    }

    /// Attaches a timer to a parked greenlet's wait.
    pub fn set_timer(&mut self, address: usize, timer: TimerId) {
        debug_assert_ne!(timer, 0, "timer ids start at 1");
        if let Some(p) = self.parked.get_mut(&address) {
            p.timer = NonZeroU64::new(timer);
        }
    }

    pub fn len(&self) -> usize {
        self.parked.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parked_entry_is_packed() {
        assert_eq!(std::mem::size_of::<Parked>(), 24);
    }

    #[test]
    fn stale_tokens_do_not_claim() {
        let mut lot = ParkingLot::default();
        let first = lot.new_token();
        lot.park(0x1000, Parked::new(first, None));
        assert!(lot.claim(0x1000, first).is_some());
        let second = lot.new_token();
        lot.park(0x1000, Parked::new(second, Some((7, Direction::Read))));
        lot.set_timer(0x1000, 3);
        assert!(lot.claim(0x1000, first).is_none(), "a wake for an earlier wait is dropped");
        let claimed = lot.claim(0x1000, second).map(|p| (p.timer(), p.fd()));
        assert_eq!(claimed, Some((Some(3), Some((7, Direction::Read)))));
        assert!(lot.claim(0x1000, second).is_none(), "a second wake for the same wait is dropped");
        assert_eq!(lot.len(), 0);
    }

    #[test]
    fn the_table_shrinks_once_a_burst_has_left() {
        let mut lot = ParkingLot::default();
        let token = lot.new_token();
        (1..=100_000).for_each(|i| lot.park(i * 64, Parked::new(token, None)));
        let grown = lot.parked.capacity();
        (11..=100_000).for_each(|i| assert!(lot.claim(i * 64, token).is_some()));
        assert!(lot.parked.capacity() <= SPARSE_FLOOR && lot.parked.capacity() < grown / 8);
        assert!((1..=10).all(|i| lot.token_of(i * 64) == Some(token)), "the greenlets still parked stay parked");
    }
}
