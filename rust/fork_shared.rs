//! Kernel objects that a forked child shares with its parent and must replace with its own: the asyncio selector's
//! epoll instances (rust/aio_selector.rs). The loop's `reinit` (once per fork) counts a new generation, which an
//! owner sees at its next use and replaces its object then, and hands back the objects' fds, whose waiters it wakes
//! at once: a child already parked on one must not sleep on an instance its parent still changes.

use std::cell::{Cell, RefCell};

#[derive(Default)]
pub(crate) struct ForkShared {
    /// How many forks the loop has seen.
    generation: Cell<u64>,
    /// The fds of the objects made in this process and still open.
    fds: RefCell<Vec<usize>>,
}

impl ForkShared {
    /// The current generation: an owner whose object is from an older one is in a child that shares it.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.get()
    }

    /// Notes an object just made (its fd), to be replaced after a fork.
    pub(crate) fn made(&self, fd: usize) {
        let mut fds = self.fds.borrow_mut();
        if !fds.contains(&fd) {
            fds.push(fd);
        }
    }

    /// Forgets `fd`, an object's about to be closed.
    pub(crate) fn forget(&self, fd: usize) {
        self.fds.borrow_mut().retain(|&shared| shared != fd);
    }

    /// In a forked child: starts a new generation and gives the fds of every object the parent shares.
    pub(crate) fn forked(&self) -> Vec<usize> {
        self.generation.set(self.generation.get() + 1);
        std::mem::take(&mut *self.fds.borrow_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fork_hands_back_what_was_made_and_not_forgotten_once() {
        let shared = ForkShared::default();
        shared.made(7);
        shared.made(9);
        shared.made(7);
        shared.forget(9);
        assert_eq!(shared.generation(), 0);
        assert_eq!(shared.forked(), vec![7]);
        assert_eq!(shared.generation(), 1);
        assert_eq!(shared.forked(), Vec::<usize>::new());
        assert_eq!(shared.generation(), 2);
    }
}
