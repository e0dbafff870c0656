"""ferrovent.subprocess: the stdlib's API, with waits and pipes that let other greenlets run."""

from __future__ import annotations

import subprocess as std_subprocess
import sys
import time

import ferrovent
import pytest
from ferrovent import subprocess

pytestmark = pytest.mark.timeout(30)


def test_every_stdlib_name_is_there():
    missing = [name for name in std_subprocess.__all__ if not hasattr(subprocess, name)]
    assert missing == []
    assert issubclass(subprocess.Popen, std_subprocess.Popen)
    assert subprocess.TimeoutExpired is std_subprocess.TimeoutExpired


def test_capture_output_text_and_bytes():
    result = subprocess.run(
        [sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr)"],
        capture_output=True,
        text=True,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "out\n", "err\n")
    assert subprocess.check_output(["sh", "-c", "printf 'a\\r\\nb'"]) == b"a\r\nb"


def test_300kb_round_trip_through_stdin_and_stdout():
    payload = bytes(range(256)) * 1200  # 307200 bytes, every byte value
    result = subprocess.run(["cat"], input=payload, capture_output=True, check=True)
    assert result.stdout == payload


def test_timeout_raises_timeout_expired_on_time_and_kills_the_child():
    start = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run(["sleep", "10"], timeout=0.3)
    assert 0.3 <= time.monotonic() - start < 3


def test_partial_output_survives_a_communicate_timeout():
    child = subprocess.Popen(["sh", "-c", "echo first; sleep 0.5; echo second"], stdout=subprocess.PIPE)
    with pytest.raises(subprocess.TimeoutExpired) as raised:
        child.communicate(timeout=0.2)
    assert raised.value.output == b"first\n"
    assert child.communicate() == (b"first\nsecond\n", None)
    assert child.returncode == 0


def test_waiting_lets_other_greenlets_run():
    ticks = []

    def ticker():
        for i in range(5):
            ticks.append(i)
            ferrovent.sleep(0.02)

    ferrovent.spawn(ticker)
    assert subprocess.call(["sleep", "0.3"]) == 0
    assert ticks == [0, 1, 2, 3, 4], "the ticker must run while call() waits"


def test_four_runs_from_four_greenlets_overlap():
    start = time.monotonic()
    runs = [ferrovent.spawn(subprocess.run, ["sleep", "0.5"]) for _ in range(4)]
    ferrovent.joinall(runs, raise_error=True)
    assert all(r.value.returncode == 0 for r in runs)
    assert time.monotonic() - start < 1.5, "four 0.5 s children must run in parallel"


def test_reading_a_pipe_line_by_line():
    child = subprocess.Popen(["sh", "-c", "for i in 1 2 3; do echo line $i; done"], stdout=subprocess.PIPE, text=True)
    assert list(child.stdout) == ["line 1\n", "line 2\n", "line 3\n"]
    assert child.wait() == 0


def test_check_call_and_check_output_raise_on_failure():
    with pytest.raises(subprocess.CalledProcessError) as raised:
        subprocess.check_output(["sh", "-c", "echo oops; exit 3"])
    assert (raised.value.returncode, raised.value.output) == (3, b"oops\n")
    with pytest.raises(subprocess.CalledProcessError):
        subprocess.check_call(["false"])
    assert subprocess.getstatusoutput("echo hi; exit 2") == (2, "hi")
    assert subprocess.getoutput("echo go") == "go"


def test_wait_with_timeout_then_without():
    child = subprocess.Popen(["sleep", "0.3"])
    with pytest.raises(subprocess.TimeoutExpired):
        child.wait(timeout=0.05)
    assert child.wait() == 0
    assert child.poll() == 0


def test_popen_bufsize_sizes_the_pipe_buffers():
    proc = subprocess.Popen(["sleep", "5"], stdin=subprocess.PIPE, bufsize=1 << 20)
    try:
        with ferrovent.Timeout(2):
            assert proc.stdin.write(b"x" * (256 * 1024)) == 256 * 1024  # fits the buffer: nobody needs to read
    finally:
        proc.kill()
        proc.wait()
    with pytest.raises(BrokenPipeError):  # the buffered data meets the dead child only now
        proc.stdin.close()
    assert proc.stdin.closed


@pytest.mark.parametrize("text", [False, True])
def test_run_timeout_while_a_grandchild_holds_the_pipes_open(text):
    # The shell is killed at the timeout; its own child keeps the pipes open, so the greenlets reading them are
    # still waiting when run() closes the pipes.
    start = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired) as raised:
        subprocess.run("echo started; sleep 3; :", shell=True, timeout=0.3, capture_output=True, text=text)
    assert time.monotonic() - start < 1.5
    assert raised.value.output == b"started\n"  # the stdlib's: bytes, even in text mode
    assert raised.value.stderr is None  # nothing was written there


def test_input_the_child_never_reads_is_dropped_quietly():
    result = subprocess.run(["true"], input=b"x" * (1 << 20), capture_output=True, timeout=10)
    assert (result.returncode, result.stdout) == (0, b"")


def test_communicate_writes_through_a_stdin_replaced_after_popen(tmp_path):
    target = tmp_path / "input"
    with subprocess.Popen(["true"], stdin=subprocess.PIPE, stdout=subprocess.PIPE) as proc, open(target, "wb") as f:
        proc.stdin.close()
        proc.stdin = f  # communicate() writes to stdin's fd, as the stdlib's does
        proc.communicate(b"through the fd", timeout=10)
    assert target.read_bytes() == b"through the fd"


def test_a_pipe_handed_to_another_child_blocks_in_that_child():
    # A shell pipeline: the reader starts before anything is written, and must wait for the data, not see EAGAIN.
    writer = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    reader = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.read().upper())"],
        stdin=writer.stdout,
        stdout=subprocess.PIPE,
    )
    writer.stdout.close()
    ferrovent.sleep(0.3)  # the reader is blocked in its read by now
    writer.communicate(b"piped")
    assert reader.communicate(timeout=10) == (b"PIPED", None)
    assert (writer.returncode, reader.returncode) == (0, 0)


def test_unbuffered_stdin_writes_everything_as_a_blocking_pipe_does():
    payload = b"x" * 300_000  # several pipe buffers: a non-blocking write would be short
    with subprocess.Popen(
        [sys.executable, "-c", "import sys; print(len(sys.stdin.buffer.read()))"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        bufsize=0,
    ) as proc:
        assert proc.stdin.write(payload) == len(payload)
        proc.stdin.close()
        assert proc.stdout.read().strip() == b"300000"
