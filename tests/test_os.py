"""ferrovent.os: reading and writing non-blocking fds cooperatively, and closing fds the loop waits on."""

from __future__ import annotations

import errno
import os
import subprocess as std_subprocess
import time

import ferrovent
import pytest
from ferrovent import os as fos

from tests.child import run_child

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def pipe():
    read_end, write_end = os.pipe()
    yield read_end, write_end
    for fd in (read_end, write_end):
        try:
            os.close(fd)  # the stdlib's, as a user would: the loop must not keep a stale registration
        except OSError:
            pass


def test_names():
    assert fos.__implements__ == ["close", "fork", "waitpid", "forkpty"]
    for name in fos.__all__:
        assert callable(getattr(fos, name))


def test_make_nonblocking_says_whether_it_changed_anything(pipe):
    read_end, _ = pipe
    assert fos.make_nonblocking(read_end) is True
    assert not os.get_blocking(read_end)
    assert fos.make_nonblocking(read_end) is False


def test_nb_read_parks_only_this_greenlet(pipe):
    read_end, write_end = pipe
    fos.make_nonblocking(read_end)
    reader = ferrovent.spawn(fos.nb_read, read_end, 100)
    ferrovent.sleep(0.01)
    assert not reader.dead
    assert fos.nb_write(write_end, b"through the pipe") == 16
    assert reader.get(timeout=5) == b"through the pipe"
    os.close(write_end)
    assert fos.nb_read(read_end, 100) == b""  # end of file


def test_nb_write_waits_for_room(pipe):
    read_end, write_end = pipe
    fos.make_nonblocking(write_end)
    written = 0
    try:
        while True:
            written += os.write(write_end, b"\0" * 65536)
    except BlockingIOError:
        pass
    writer = ferrovent.spawn(fos.nb_write, write_end, b"more")
    ferrovent.sleep(0.01)
    assert not writer.dead
    drained = 0
    while drained < written:
        drained += len(os.read(read_end, 1 << 20))
    assert writer.get(timeout=5) == 4
    assert os.read(read_end, 10) == b"more"


def test_close_wakes_the_waiter_with_ebadf(pipe):
    read_end, _ = pipe
    fos.make_nonblocking(read_end)
    reader = ferrovent.spawn(fos.nb_read, read_end, 1)
    ferrovent.sleep(0.01)
    fos.close(read_end)
    with pytest.raises(OSError) as info:
        reader.get(timeout=5)
    assert info.value.errno == errno.EBADF


def test_waitpid_parks_only_the_calling_greenlet():
    child = std_subprocess.Popen(["sleep", "0.2"])
    ticks = []
    ticker = ferrovent.spawn(lambda: [ticks.append(ferrovent.sleep(0.02)) for _ in range(5)])
    pid, status = fos.waitpid(child.pid, 0)
    assert (pid, os.waitstatus_to_exitcode(status)) == (child.pid, 0)
    assert len(ticks) == 5, "the other greenlet ran while waitpid waited"
    child.returncode = 0  # reaped above
    ticker.join()
    start = time.monotonic()
    assert fos.wait_child_exit(os.getpid() + 10**6, timeout=0.05) is True  # no such child: nothing to wait for
    assert time.monotonic() - start < 1


def test_fork_and_watch_calls_back_and_leaves_the_child_for_waitpid():
    seen = []
    pid = fos.fork_and_watch(seen.append)
    if not pid:
        os._exit(7)
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:
        ferrovent.sleep(0.01)
    assert [(child.pid, os.waitstatus_to_exitcode(child.rstatus)) for child in seen] == [(pid, 7)]
    found, status = fos.waitpid(pid, os.WNOHANG)  # not reaped by the watch: the status is still there
    assert (found, os.waitstatus_to_exitcode(status)) == (pid, 7)


def test_tp_read_and_tp_write_run_in_the_thread_pool(pipe):
    read_end, write_end = pipe
    assert fos.tp_write(write_end, b"data") == 4
    assert fos.tp_read(read_end, 10) == b"data"
    assert ferrovent.get_hub().threadpool.size >= 1


def test_nb_read_on_a_reused_fd_number_after_a_plain_close():
    # The loop must not keep the first pipe's registration: after os.close, the kernel forgets the fd, and a new
    # pipe given the same number has to be watched afresh.
    for _ in range(2):
        read_end, write_end = os.pipe()
        fos.make_nonblocking(read_end)
        writer = ferrovent.spawn_later(0.01, os.write, write_end, b"x")
        with ferrovent.Timeout(5):
            assert fos.nb_read(read_end, 1) == b"x"
        writer.join(timeout=5)
        os.close(read_end)
        os.close(write_end)
    reused_read, reused_write = os.pipe()
    try:
        assert reused_read == read_end
        fos.make_nonblocking(reused_read)
        ferrovent.spawn_later(0.01, os.write, reused_write, b"y")
        with ferrovent.Timeout(5):
            assert fos.nb_read(reused_read, 1) == b"y"
    finally:
        os.close(reused_read)
        os.close(reused_write)


def test_patch_os_replaces_forkpty_and_its_child_runs_greenlets():
    proc = run_child(
        """
        import os
        from ferrovent import monkey; monkey.patch_os()
        import ferrovent, ferrovent.os
        assert os.forkpty is ferrovent.os.forkpty and os.fork is ferrovent.os.fork
        pid, master = os.forkpty()
        if pid == 0:  # the child: its hub works, with a fresh poller
            ferrovent.joinall([ferrovent.spawn(ferrovent.sleep, 0.01) for _ in range(3)])
            os._exit(7)
        print(os.waitpid(pid, 0)[1] >> 8)
        """
    )
    assert proc.stdout == "7\n"
