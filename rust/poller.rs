//! The mio poller (epoll on Linux, kqueue on macOS/BSD), edge-triggered, and its cross-thread waker.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

/// The system poller mio uses on this platform, as `python -m ferrovent info` names it.
pub const SYSTEM_POLLER: &str = if cfg!(any(target_os = "linux", target_os = "android", target_os = "illumos")) {
    "epoll"
} else if cfg!(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
)) {
    "kqueue"
} else {
    "poll"
};

/// Interest in urgent data, where the poller reports it apart (epoll's EPOLLPRI): the fd table needs to know.
#[cfg(any(target_os = "linux", target_os = "android"))]
const URGENT: Interest = Interest::PRIORITY;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const URGENT: Interest = Interest::READABLE;

/// The token of the waker; fds use their own number as token.
pub const WAKER_TOKEN: Token = Token(usize::MAX);

/// What one poll reported for one fd.
#[derive(Clone, Copy, Debug)]
pub struct Readiness {
    pub fd: usize,
    pub readable: bool,
    pub writable: bool,
    /// Reads of the fd no longer wait for arrivals: urgent (TCP out-of-band) data is pending, so a read may stop at
    /// its mark, or the stream has ended or failed, so reads return at once.
    pub reads_settled: bool,
}

pub struct Poller {
    poll: Poll,
    events: Events,
    waker: Arc<Waker>,
}

impl Poller {
    pub fn new() -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER_TOKEN)?);
        Ok(Self { poll, events: Events::with_capacity(1024), waker })
    }

    /// A handle any thread may use to interrupt `poll`.
    pub fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }

    /// Registers an fd for both directions. Errors (a regular file, a closed fd) are returned to the caller.
    pub fn register(&self, fd: RawFd) -> io::Result<()> {
        let token = Token(usize::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?);
        let interest = Interest::READABLE | Interest::WRITABLE | URGENT;
        match self.poll.registry().register(&mut SourceFd(&fd), token, interest) {
            // The fd number was reused without our close hook: the old registration is the kernel's, keep it.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                self.poll.registry().reregister(&mut SourceFd(&fd), token, interest)
            }
            other => other,
        }
    }

    /// Drops an fd's registration; an fd the kernel already forgot is not an error.
    pub fn deregister(&self, fd: RawFd) {
        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
    }

    /// Waits up to `timeout` (None: forever) and appends what became ready to `out`.
    /// Returns whether the waker fired. An interrupted wait (a signal) returns normally with nothing ready.
    pub fn poll(&mut self, timeout: Option<Duration>, out: &mut Vec<Readiness>) -> io::Result<bool> {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(false),
            Err(e) => return Err(e),
        }
        let mut woken = false;
        for event in &self.events {
            if event.token() == WAKER_TOKEN {
                woken = true;
                continue;
            }
            // Errors and hang-ups make both directions "ready": the retried syscall reports what happened.
            let failed = event.is_error() || event.is_read_closed() || event.is_write_closed();
            out.push(Readiness {
                fd: event.token().0,
                readable: event.is_readable() || failed,
                writable: event.is_writable() || failed,
                reads_settled: event.is_priority() || event.is_read_closed() || event.is_error(),
            });
        }
        Ok(woken)
    }
}
