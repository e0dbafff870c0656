//! The asyncio selector's registered fds (`Interest`), and the kernel's answer to "which of them are ready?".
//!
//! `Interest` is the table `AioSelector` keeps: each registered fd with the `selectors` events it wants and its key.
//! The kernel is asked through one of two backends (`Kernel`), which differ in what a question costs:
//! - Linux: the selector's own epoll instance, level-triggered, kept in step at each `set` and `remove` (as the
//!   stdlib's `EpollSelector`). A zero-timeout epoll_wait costs per ready fd, not per registered fd, and a loop with
//!   nothing ready parks on the one epoll fd, which is readable while any registered fd is ready.
//! - other unixes: one zero-timeout poll(2) over every registered fd at each question, and a park on each fd.
//!
//! Both report an fd's hang-up or error as ready in every direction it was registered for: the callback's own
//! syscall then says what happened. With epoll, asyncio sees what the stdlib's default loop on Linux shows it: an fd
//! epoll refuses (a regular file: EPERM) cannot be registered, and an fd closed while registered leaves the set
//! without a word (poll(2) reports it ready, POLLNVAL). Unlike the stdlib's, a forked child does not share the
//! instance with its parent past its first use of the selector (`renew`): neither then changes the other's set.

use std::io;
use std::os::fd::{OwnedFd, RawFd};

use crate::fdtable::Direction;
use crate::hashers::IntMap;
use crate::poll_bits::{poll_now, poll_request, ready_directions};

/// The registered fds: each fd with its poll(2) request bits (one array, what poll(2) takes) and its key at the same
/// index; the kernel's copy of them, if the backend keeps one.
pub(crate) struct Interest<K> {
    pollfds: Vec<libc::pollfd>,
    keys: Vec<K>,
    index: IntMap<usize, usize>,
    kernel: Kernel,
}

/// A key `set` did not register, with the kernel's reason; the caller drops it outside its borrows.
pub(crate) struct Refused<K> {
    pub(crate) error: io::Error,
    pub(crate) key: K,
}

impl<K> Interest<K> {
    /// An empty table on the platform's backend.
    pub(crate) fn new() -> io::Result<Self> {
        Ok(Self::on(Kernel::native()?))
    }

    fn on(kernel: Kernel) -> Self {
        Self { pollfds: Vec::new(), keys: Vec::new(), index: IntMap::default(), kernel }
    }

    /// Registers `fd` for `events` with `key`, or changes its registration; returns the key it replaced.
    pub(crate) fn set(&mut self, fd: usize, events: u32, key: K) -> Result<Option<K>, Refused<K>> {
        let Ok(raw) = RawFd::try_from(fd) else {
            return Err(Refused { error: io::Error::from_raw_os_error(libc::EBADF), key });
        };
        let bits = poll_request(events);
        match self.index.get(&fd) {
            Some(&i) => {
                // told even when the bits are the same (the stdlib's selector does not): the fd may have been closed
                // while registered, which took it out of the epoll set, and its number reused since. If it is closed
                // and not reused, a change of the key alone is kept without complaint, as the stdlib's is.
                let key_only = self.pollfds[i].events == bits;
                match self.kernel.watch(raw, bits, false) {
                    Err(error) if key_only && error.raw_os_error() == Some(libc::EBADF) => {}
                    Err(error) => return Err(Refused { error, key }),
                    Ok(()) => {}
                }
                self.pollfds[i].events = bits;
                Ok(Some(std::mem::replace(&mut self.keys[i], key)))
            }
            None => {
                if let Err(error) = self.kernel.watch(raw, bits, true) {
                    return Err(Refused { error, key });
                }
                self.index.insert(fd, self.pollfds.len());
                self.pollfds.push(libc::pollfd { fd: raw, events: bits, revents: 0 });
                self.keys.push(key);
                Ok(None)
            }
        }
    }

    /// Forgets `fd`; returns its key if it was registered.
    pub(crate) fn remove(&mut self, fd: usize) -> Option<K> {
        let i = self.index.remove(&fd)?;
        self.kernel.delete(self.pollfds[i].fd);
        self.pollfds.swap_remove(i);
        let key = self.keys.swap_remove(i);
        if let Some(moved) = self.pollfds.get(i) {
            self.index.insert(usize::try_from(moved.fd).unwrap_or(usize::MAX), i);
        }
        Some(key)
    }

    /// Asks the kernel, without waiting, which registered fds are ready: `into` gets what `make` makes of each one's
    /// key and `selectors` event bits (room for all of them made at once). Returns whether the kernel also named an
    /// fd no longer registered: one closed while registered whose file lives on elsewhere (a dup) stays in an epoll
    /// set, and enough of them can fill the answer and hide a ready fd, so the caller then asks a `renew`ed backend
    /// instead.
    pub(crate) fn ready<T>(&mut self, into: &mut Vec<T>, mut make: impl FnMut(&K, u32) -> T) -> io::Result<bool> {
        let Self { pollfds, keys, index, kernel } = self;
        #[cfg(not(target_os = "linux"))]
        let _ = index; // epoll's events name fds; poll(2)'s come back in the table's order
        let mut unregistered = false;
        match kernel {
            Kernel::Closed => return Err(io::Error::from_raw_os_error(libc::EBADF)),
            _ if pollfds.is_empty() => {}
            Kernel::Poll => {
                match poll_now(pollfds) {
                    Err(err) if err.raw_os_error() == Some(libc::EINTR) => return Ok(false), // interrupted: none found
                    Err(err) => return Err(err),
                    Ok(count) => into.reserve(count),
                }
                for (pollfd, key) in pollfds.iter().zip(&*keys) {
                    match ready_directions(pollfd.events, pollfd.revents) {
                        0 => {}
                        bits => into.push(make(key, bits)),
                    }
                }
            }
            #[cfg(target_os = "linux")]
            Kernel::Epoll(epoll) => {
                let events = epoll.wait_now(pollfds.len())?;
                into.reserve(events.len());
                for event in events {
                    let (fd, revents) = (event.u64, event.events);
                    let Some(&i) = usize::try_from(fd).ok().and_then(|fd| index.get(&fd)) else {
                        unregistered = true;
                        continue;
                    };
                    match ready_directions(pollfds[i].events, epoll::poll_revents(revents)) {
                        0 => {}
                        bits => into.push(make(&keys[i], bits)),
                    }
                }
            }
        }
        Ok(unregistered)
    }

    /// The fds and directions a loop with nothing ready parks on, each until its next edge.
    pub(crate) fn waits(&self) -> Vec<(usize, Direction)> {
        match &self.kernel {
            Kernel::Poll => {
                let mut waits = Vec::with_capacity(self.pollfds.len());
                for p in &self.pollfds {
                    let fd = usize::try_from(p.fd).unwrap_or(usize::MAX);
                    if p.events & libc::POLLIN != 0 {
                        waits.push((fd, Direction::Read));
                    }
                    if p.events & libc::POLLOUT != 0 {
                        waits.push((fd, Direction::Write));
                    }
                }
                waits
            }
            #[cfg(target_os = "linux")]
            Kernel::Epoll(epoll) => vec![(epoll.fd(), Direction::Read)],
            Kernel::Closed => Vec::new(),
        }
    }

    /// The fd of the kernel object the backend keeps, if it keeps one (epoll's instance).
    pub(crate) fn kernel_fd(&self) -> Option<usize> {
        match &self.kernel {
            #[cfg(target_os = "linux")]
            Kernel::Epoll(epoll) => Some(epoll.fd()),
            _ => None,
        }
    }

    /// Whether the next park would wait on `fd` again (the loop keeps its registration until then).
    pub(crate) fn waits_on(&self, fd: usize) -> bool {
        match &self.kernel {
            Kernel::Poll => self.index.contains_key(&fd),
            #[cfg(target_os = "linux")]
            Kernel::Epoll(epoll) => epoll.fd() == fd,
            Kernel::Closed => false,
        }
    }

    /// Gives the registrations a new kernel object (a forked child shares its parent's; an old one may hold entries
    /// of fds closed while registered): returns the one replaced, for the caller to forget in the loop and close.
    pub(crate) fn renew(&mut self) -> io::Result<Option<OwnedFd>> {
        match &self.kernel {
            Kernel::Poll | Kernel::Closed => Ok(None),
            #[cfg(target_os = "linux")]
            Kernel::Epoll(_) => {
                let kernel = Kernel::native()?;
                for p in &self.pollfds {
                    // an fd closed since it was registered is refused: it had left the old set too
                    let _ = kernel.watch(p.fd, p.events, true);
                }
                Ok(std::mem::replace(&mut self.kernel, kernel).into_fd())
            }
        }
    }

    /// Forgets every registration and closes the backend (no `set` or `ready` after this): returns the keys, for
    /// the caller to drop outside its borrows, and the kernel object's fd, for it to forget in the loop and close.
    pub(crate) fn close(&mut self) -> (Vec<K>, Option<OwnedFd>) {
        let keys = self.take_keys();
        (keys, std::mem::replace(&mut self.kernel, Kernel::Closed).into_fd())
    }

    /// Forgets every registration, leaving them in the kernel's copy (for a selector nothing will use again).
    pub(crate) fn take_keys(&mut self) -> Vec<K> {
        self.pollfds.clear();
        self.index.clear();
        std::mem::take(&mut self.keys)
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &K> {
        self.keys.iter()
    }

    pub(crate) fn len(&self) -> usize {
        self.pollfds.len()
    }
}

/// Where the registrations are known to the kernel.
enum Kernel {
    /// Nowhere: one poll(2) over the table at each question.
    #[cfg_attr(target_os = "linux", allow(dead_code))] // Linux uses epoll; the tests run this one there too
    Poll,
    /// The selector's own epoll instance.
    #[cfg(target_os = "linux")]
    Epoll(epoll::Epoll),
    /// After `Interest::close`.
    Closed,
}

impl Kernel {
    #[cfg(target_os = "linux")]
    fn native() -> io::Result<Self> {
        epoll::Epoll::new().map(Kernel::Epoll)
    }

    #[cfg(not(target_os = "linux"))]
    fn native() -> io::Result<Self> {
        Ok(Kernel::Poll)
    }

    /// Tells the kernel the poll(2) bits `fd` is registered for: a new registration (`added`) or a change.
    #[cfg_attr(not(target_os = "linux"), allow(unused_variables))] // poll(2) keeps nothing in the kernel
    fn watch(&self, fd: RawFd, bits: libc::c_short, added: bool) -> io::Result<()> {
        match self {
            Kernel::Poll => Ok(()),
            #[cfg(target_os = "linux")]
            Kernel::Epoll(epoll) if added => epoll.add(fd, bits),
            #[cfg(target_os = "linux")]
            Kernel::Epoll(epoll) => epoll.modify(fd, bits),
            Kernel::Closed => Err(io::Error::from_raw_os_error(libc::EBADF)),
        }
    }

    fn delete(&self, fd: RawFd) {
        #[cfg(target_os = "linux")]
        if let Kernel::Epoll(epoll) = self {
            epoll.delete(fd);
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (self, fd);
    }

    fn into_fd(self) -> Option<OwnedFd> {
        match self {
            Kernel::Poll | Kernel::Closed => None,
            #[cfg(target_os = "linux")]
            Kernel::Epoll(epoll) => Some(epoll.into_fd()),
        }
    }
}

#[cfg(target_os = "linux")]
mod epoll {
    //! The epoll(7) calls, level-triggered, each entry's data its fd.

    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

    /// The most events one `wait_now` takes; any more ready stay ready for the next (level-triggered).
    const MAX_EVENTS: usize = 4096;

    pub(super) struct Epoll {
        fd: OwnedFd,
        /// `wait_now`'s buffer, grown to the registered count (at most MAX_EVENTS) and kept.
        events: Vec<libc::epoll_event>,
    }

    impl Epoll {
        pub(super) fn new() -> io::Result<Self> {
            // SAFETY: epoll_create1 takes no pointers.
            let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `fd` was just opened and is owned by nothing else.
            Ok(Self { fd: unsafe { OwnedFd::from_raw_fd(fd) }, events: Vec::new() })
        }

        pub(super) fn fd(&self) -> usize {
            usize::try_from(self.fd.as_raw_fd()).unwrap_or(usize::MAX)
        }

        pub(super) fn into_fd(self) -> OwnedFd {
            self.fd
        }

        fn ctl(&self, op: libc::c_int, fd: RawFd, bits: libc::c_short) -> io::Result<()> {
            let data = u64::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
            let mut event = libc::epoll_event { events: epoll_bits(bits), u64: data };
            // SAFETY: `event` is a valid epoll_event for the duration of the call, which copies it (and ignores it
            // for EPOLL_CTL_DEL).
            if unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &raw mut event) } < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }

        /// Adds `fd`; if the instance has it already (a registration whose remove failed), changes it.
        pub(super) fn add(&self, fd: RawFd, bits: libc::c_short) -> io::Result<()> {
            match self.ctl(libc::EPOLL_CTL_ADD, fd, bits) {
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => self.ctl(libc::EPOLL_CTL_MOD, fd, bits),
                done => done,
            }
        }

        /// Changes `fd`'s bits; if the instance lost it (closed, and the number reused since), adds it.
        pub(super) fn modify(&self, fd: RawFd, bits: libc::c_short) -> io::Result<()> {
            match self.ctl(libc::EPOLL_CTL_MOD, fd, bits) {
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => self.ctl(libc::EPOLL_CTL_ADD, fd, bits),
                done => done,
            }
        }

        /// Removes `fd`, ignoring a failure as the stdlib's EpollSelector does: the fd may have been closed since
        /// (which removed it already).
        pub(super) fn delete(&self, fd: RawFd) {
            let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0);
        }

        /// One zero-timeout epoll_wait for up to `registered` events.
        pub(super) fn wait_now(&mut self, registered: usize) -> io::Result<&[libc::epoll_event]> {
            let capacity = registered.clamp(1, MAX_EVENTS);
            if self.events.len() < capacity {
                self.events.resize(capacity, libc::epoll_event { events: 0, u64: 0 });
            }
            let max = libc::c_int::try_from(capacity).unwrap_or(libc::c_int::MAX);
            // SAFETY: `events` holds at least `max` epoll_events, which epoll_wait may overwrite; the timeout is zero.
            let found = unsafe { libc::epoll_wait(self.fd.as_raw_fd(), self.events.as_mut_ptr(), max, 0) };
            if found < 0 {
                let err = io::Error::last_os_error();
                return if err.raw_os_error() == Some(libc::EINTR) { Ok(&[]) } else { Err(err) };
            }
            Ok(&self.events[..usize::try_from(found).unwrap_or(0)])
        }
    }

    /// epoll's request bits for poll(2)'s.
    fn epoll_bits(bits: libc::c_short) -> u32 {
        let mut events = 0;
        if bits & libc::POLLIN != 0 {
            events |= libc::EPOLLIN;
        }
        if bits & libc::POLLOUT != 0 {
            events |= libc::EPOLLOUT;
        }
        events.cast_unsigned()
    }

    /// poll(2)'s bits for what epoll reported.
    pub(super) fn poll_revents(events: u32) -> libc::c_short {
        let pairs = [
            (libc::EPOLLIN, libc::POLLIN),
            (libc::EPOLLOUT, libc::POLLOUT),
            (libc::EPOLLERR, libc::POLLERR),
            (libc::EPOLLHUP, libc::POLLHUP),
        ];
        pairs.iter().filter(|(e, _)| events & e.cast_unsigned() != 0).fold(0, |bits, (_, p)| bits | p)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    use crate::poll_bits::{READ, WRITE};

    use super::*;

    fn fd_of(stream: &UnixStream) -> usize {
        usize::try_from(stream.as_raw_fd()).unwrap()
    }

    fn ready_now(interest: &mut Interest<usize>) -> Vec<(usize, u32)> {
        let mut found = Vec::new();
        interest.ready(&mut found, |key, bits| (*key, bits)).unwrap();
        found.sort_unstable();
        found
    }

    /// The native backend and poll(2), which other unixes use, on Linux too.
    fn each_backend() -> Vec<Interest<usize>> {
        vec![Interest::new().unwrap(), Interest::on(Kernel::Poll)]
    }

    #[test]
    fn removing_an_fd_keeps_the_others_indexed() {
        let mut interest = Interest::on(Kernel::Poll);
        for fd in [4, 5, 6] {
            assert!(interest.set(fd, READ, fd).is_ok_and(|old| old.is_none()));
        }
        assert_eq!(interest.remove(4), Some(4));
        assert_eq!(interest.index.get(&6), Some(&0));
        assert_eq!(interest.index.get(&5), Some(&1));
        assert!(interest.set(5, READ | WRITE, 50).is_ok_and(|old| old == Some(5)));
        assert_eq!(interest.keys, vec![6, 50]);
        assert_eq!(interest.waits(), vec![(6, Direction::Read), (5, Direction::Read), (5, Direction::Write)]);
        assert_eq!(interest.remove(4), None);
    }

    #[test]
    fn each_backend_reports_level_truth_in_the_registered_directions() {
        for mut interest in each_backend() {
            let (a, b) = UnixStream::pair().unwrap();
            interest.set(fd_of(&a), READ, 1).ok().unwrap();
            assert_eq!(ready_now(&mut interest), vec![]);
            interest.set(fd_of(&a), READ | WRITE, 2).ok().unwrap();
            assert_eq!(ready_now(&mut interest), vec![(2, WRITE)]);
            interest.set(fd_of(&a), READ, 3).ok().unwrap();
            (&b).write_all(b"x").unwrap();
            assert_eq!(ready_now(&mut interest), vec![(3, READ)]);
            assert_eq!(ready_now(&mut interest), vec![(3, READ)], "still ready: level-triggered");
            drop(b);
            interest.set(fd_of(&a), WRITE, 4).ok().unwrap();
            assert_eq!(ready_now(&mut interest), vec![(4, WRITE)], "a hang-up is ready as registered");
            assert_eq!(interest.remove(fd_of(&a)), Some(4));
            assert_eq!(ready_now(&mut interest), vec![]);
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn epoll_refuses_a_regular_file_and_keeps_nothing_of_it() {
        let file = std::fs::File::open("/proc/self/status").unwrap();
        let fd = usize::try_from(file.as_raw_fd()).unwrap();
        let mut interest: Interest<usize> = Interest::new().unwrap();
        let refused = interest.set(fd, READ, 7).err().unwrap();
        assert_eq!((refused.error.raw_os_error(), refused.key), (Some(libc::EPERM), 7));
        assert_eq!(interest.len(), 0);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn an_fd_closed_while_registered_does_not_break_the_selector() {
        let mut interest = Interest::new().unwrap();
        let (a, _b) = UnixStream::pair().unwrap();
        let (c, _d) = UnixStream::pair().unwrap();
        let fd = fd_of(&a);
        interest.set(fd, READ, 1).ok().unwrap();
        // the number now names `c`'s socket, and `a`'s is closed: no other thread can take the number in between
        // SAFETY: both fds are open and owned by this test; `a` owns the number from now on, and closes it.
        assert!(unsafe { libc::dup2(c.as_raw_fd(), a.as_raw_fd()) } >= 0);
        assert_eq!(ready_now(&mut interest), vec![], "epoll forgets a closed fd, as the stdlib's selector shows");
        interest.set(fd, WRITE, 2).ok().unwrap();
        assert_eq!(ready_now(&mut interest), vec![(2, WRITE)], "the reused number is watched again");
        assert_eq!(interest.remove(fd), Some(2));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_new_key_for_a_closed_fd_is_kept_and_new_directions_are_refused() {
        let mut interest = Interest::new().unwrap();
        let (a, _b) = UnixStream::pair().unwrap();
        // a copy at a number far above what the other tests' fds take, so none reuses it once it is closed
        // SAFETY: `a`'s fd is open; the copy is this test's, closed below.
        let copy = unsafe { libc::fcntl(a.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 900) };
        assert!(copy >= 900);
        let fd = usize::try_from(copy).unwrap();
        interest.set(fd, READ, 1).ok().unwrap();
        // SAFETY: the copy made above, closed once.
        unsafe { libc::close(copy) };
        assert!(interest.set(fd, READ, 2).is_ok_and(|old| old == Some(1)), "a new key alone, kept as the stdlib's");
        let refused = interest.set(fd, READ | WRITE, 3).err().unwrap();
        assert_eq!((refused.error.raw_os_error(), refused.key), (Some(libc::EBADF), 3));
        assert_eq!(interest.remove(fd), Some(2));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_renewed_backend_keeps_the_registrations() {
        let mut interest = Interest::new().unwrap();
        let (a, _b) = UnixStream::pair().unwrap();
        interest.set(fd_of(&a), WRITE, 1).ok().unwrap();
        let old = interest.renew().unwrap();
        assert!(old.is_some());
        assert_eq!(ready_now(&mut interest), vec![(1, WRITE)]);
        assert!(interest.waits_on(interest.waits()[0].0));
        let (keys, fd) = interest.close();
        assert_eq!((keys, fd.is_some()), (vec![1], true));
        assert!(interest.ready(&mut Vec::new(), |_, bits| bits).is_err());
        assert!(interest.set(fd_of(&a), READ, 2).is_err());
    }
}
