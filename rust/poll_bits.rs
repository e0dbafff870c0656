//! One vocabulary for an fd's directions as bits, and its translation to and from poll(2)'s: the `selectors`
//! module's `EVENT_READ`/`EVENT_WRITE` and libev's `EV_READ`/`EV_WRITE` (gevent's watcher API) have the same values,
//! so the asyncio selector (rust/aio_interest.rs) and the loop's io watchers (rust/watchers.rs) share it; and the
//! zero-timeout poll(2) they and the sockets' level checks (rust/wait.rs) make.

use std::io;

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

/// One zero-timeout poll(2) over `pollfds`, which come back with their `revents` set: how many have some. An error,
/// EINTR included, is the caller's to judge (the revents are then not to be read).
pub(crate) fn poll_now(pollfds: &mut [libc::pollfd]) -> io::Result<usize> {
    let count = libc::nfds_t::try_from(pollfds.len()).unwrap_or(libc::nfds_t::MAX);
    // SAFETY: `pollfds` is a valid, exclusively borrowed array of `count` pollfds; the timeout is zero, and poll(2)
    // only writes their `revents`.
    let found = unsafe { libc::poll(pollfds.as_mut_ptr(), count, 0) };
    usize::try_from(found).map_err(|_| io::Error::last_os_error())
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
    fn poll_now_says_how_many_fds_are_ready_and_what_each_is() {
        use std::os::fd::AsRawFd;
        use std::os::unix::net::UnixStream;

        let (a, _b) = UnixStream::pair().unwrap();
        let mut pollfds = [
            libc::pollfd { fd: a.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: a.as_raw_fd(), events: libc::POLLOUT, revents: 0 },
            libc::pollfd { fd: -1, events: libc::POLLIN, revents: 0 }, // poll(2) skips negative fds
        ];
        assert_eq!(poll_now(&mut pollfds).unwrap(), 1);
        assert_eq!(pollfds.map(|p| p.revents), [0, libc::POLLOUT, 0]);
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
