//! One vocabulary for an fd's directions as bits, and its translation to and from poll(2)'s: the `selectors`
//! module's `EVENT_READ`/`EVENT_WRITE` and libev's `EV_READ`/`EV_WRITE` (gevent's watcher API) have the same values,
//! so the asyncio selector (rust/aio_interest.rs) and the loop's io watchers (rust/watchers.rs) share it.

/// Readable: `selectors.EVENT_READ`, libev's `EV_READ`.
pub(crate) const READ: u32 = 1;
/// Writable: `selectors.EVENT_WRITE`, libev's `EV_WRITE`.
pub(crate) const WRITE: u32 = 2;

/// poll(2)'s request bits for the directions in `directions`.
pub(crate) fn poll_request(directions: u32) -> libc::c_short {
    let mut bits = 0;
    if directions & READ != 0 {
        bits |= libc::POLLIN;
    }
    if directions & WRITE != 0 {
        bits |= libc::POLLOUT;
    }
    bits
}

/// The directions ready by what the kernel reported (`revents`, poll(2)'s bits) on an fd asked about `requested`
/// (also poll(2)'s bits). A hang-up, an error or a closed fd makes every requested direction ready: the caller's
/// own syscall then says what happened.
pub(crate) fn ready_directions(requested: libc::c_short, revents: libc::c_short) -> u32 {
    let failed = revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0;
    let mut directions = 0;
    if requested & libc::POLLIN != 0 && (failed || revents & libc::POLLIN != 0) {
        directions |= READ;
    }
    if requested & libc::POLLOUT != 0 && (failed || revents & libc::POLLOUT != 0) {
        directions |= WRITE;
    }
    directions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_asks_for_the_directions_given() {
        assert_eq!(poll_request(READ), libc::POLLIN);
        assert_eq!(poll_request(WRITE), libc::POLLOUT);
        assert_eq!(poll_request(READ | WRITE), libc::POLLIN | libc::POLLOUT);
        assert_eq!(poll_request(0), 0);
    }

    #[test]
    fn ready_directions_keep_to_the_requested_ones() {
        assert_eq!(ready_directions(libc::POLLIN, libc::POLLIN), READ);
        assert_eq!(ready_directions(libc::POLLIN | libc::POLLOUT, libc::POLLOUT), WRITE);
        assert_eq!(ready_directions(libc::POLLOUT, libc::POLLIN), 0);
        assert_eq!(ready_directions(libc::POLLIN | libc::POLLOUT, 0), 0);
    }

    #[test]
    fn a_failed_or_closed_fd_is_ready_in_every_requested_direction() {
        assert_eq!(ready_directions(libc::POLLIN, libc::POLLHUP), READ);
        assert_eq!(ready_directions(libc::POLLOUT, libc::POLLHUP), WRITE);
        assert_eq!(ready_directions(libc::POLLIN | libc::POLLOUT, libc::POLLERR), READ | WRITE);
        assert_eq!(ready_directions(libc::POLLIN | libc::POLLOUT, libc::POLLNVAL), READ | WRITE);
    }
}
