"""ferrovent.asyncio's event loop: asyncio code on the hub's reactor, sharing the thread with greenlets."""

from __future__ import annotations

import asyncio
import contextvars
import errno
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading

import ferrovent
import pytest
from ferrovent import socket as green_socket
from ferrovent.asyncio import EventLoop, EventLoopPolicy, new_event_loop, wait_greenlet
from ferrovent.event import Event

from tests.asyncio_helpers import BOUND, run


def test_a_coroutine_runs_to_its_result_on_ferroventss_loop():
    async def main():
        await asyncio.sleep(0.01)
        return asyncio.get_running_loop()

    loop = new_event_loop()
    try:
        assert loop.run_until_complete(main()) is loop
        assert isinstance(loop, EventLoop) and isinstance(loop, asyncio.AbstractEventLoop)
    finally:
        loop.close()


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.run's loop_factory is new in 3.12")
def test_asyncio_run_takes_new_event_loop_as_its_loop_factory():
    async def main():
        return type(asyncio.get_running_loop())

    assert asyncio.run(main(), loop_factory=new_event_loop) is EventLoop


def test_the_policy_makes_asyncio_run_use_ferroventss_loop():
    async def main():
        return type(asyncio.get_running_loop())

    asyncio.set_event_loop_policy(EventLoopPolicy())
    try:
        assert asyncio.run(main()) is EventLoop
    finally:
        asyncio.set_event_loop_policy(None)


def _green(sock: socket.socket) -> green_socket.socket:
    return green_socket.socket(fileno=sock.detach())


def test_a_greenlet_on_a_socket_and_a_task_on_a_socket_take_turns_in_one_reactor():
    """A ball passed back and forth between a greenlet blocked in recv and a task awaiting a stream: each can
    only move once the other has, so the order proves both were parked in the same loop, on one thread."""
    order = []
    green_in, task_out = socket.socketpair()
    green_out, task_in = socket.socketpair()
    green_in, green_out = _green(green_in), _green(green_out)
    task_out.setblocking(False)

    def greenlet_side():
        for _ in range(3):
            ball = green_in.recv(16)
            order.append(("greenlet", ball, threading.get_ident()))
            green_out.sendall(ball + b"g")

    async def main():
        loop = asyncio.get_running_loop()
        reader, writer = await asyncio.open_connection(sock=task_in)
        player = ferrovent.spawn(greenlet_side)
        await loop.sock_sendall(task_out, b"x")
        for _ in range(3):
            ball = await reader.read(16)
            order.append(("task", ball, threading.get_ident()))
            await loop.sock_sendall(task_out, ball + b"t")
        await wait_greenlet(player)
        writer.close()

    try:
        run(main())
    finally:
        for sock in (green_in, green_out, task_out):
            sock.close()
    assert [who for who, _, _ in order] == ["greenlet", "task"] * 3
    assert [ball for _, ball, _ in order] == [b"x", b"xg", b"xgt", b"xgtg", b"xgtgt", b"xgtgtg"]
    assert len({ident for _, _, ident in order}) == 1


def test_call_soon_from_another_greenlet_wakes_the_parked_loop():
    async def main():
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        ferrovent.spawn(loop.call_soon, future.set_result, "from a greenlet")
        return await future  # no timer or fd would end the loop's wait: only the greenlet's call_soon

    assert run(main()) == "from a greenlet"


def test_call_soon_threadsafe_from_another_thread_wakes_the_loop():
    async def main():
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        thread = threading.Thread(target=loop.call_soon_threadsafe, args=(future.set_result, "from a thread"))
        thread.start()
        result = await future
        thread.join(BOUND)
        return result

    assert run(main()) == "from a thread"


def test_a_greenlet_sees_no_running_loop_while_the_loop_waits_and_can_run_its_own():
    seen = {}

    def other_greenlet():
        seen["running"] = asyncio._get_running_loop()

        async def inner():
            await asyncio.sleep(0.01)
            return asyncio.get_running_loop()

        inner_loop = new_event_loop()
        try:
            seen["inner"] = inner_loop.run_until_complete(inner()) is inner_loop
        finally:
            inner_loop.close()

    async def main():
        g = ferrovent.spawn(other_greenlet)
        await wait_greenlet(g)
        return asyncio.get_running_loop()

    loop = new_event_loop()
    try:
        assert loop.run_until_complete(main()) is loop
    finally:
        loop.close()
    assert seen == {"running": None, "inner": True}


def test_the_loop_gets_its_asyncgen_hooks_back_whatever_a_greenlet_set_while_it_waited():
    def others_firstiter(agen):
        pass

    def other_greenlet():
        sys.set_asyncgen_hooks(firstiter=others_firstiter, finalizer=None)

    async def ticks():
        yield 1

    async def main():
        loop = asyncio.get_running_loop()
        before = sys.get_asyncgen_hooks()
        await wait_greenlet(ferrovent.spawn(other_greenlet))
        after = sys.get_asyncgen_hooks()
        async for _ in ticks():  # a new async generator is the loop's to finalize, not the greenlet's
            pass
        return before, after, loop

    loop = new_event_loop()
    saved = sys.get_asyncgen_hooks()
    try:
        before, after, ran_on = loop.run_until_complete(main())
    finally:
        loop.close()
        sys.set_asyncgen_hooks(*saved)
    assert ran_on is loop
    assert before.firstiter == loop._asyncgen_firstiter_hook
    assert after == before


def test_a_contextvar_set_in_a_greenlet_does_not_leak_into_the_task():
    var = contextvars.ContextVar("var", default="unset")

    async def main():
        var.set("task")
        g = ferrovent.spawn(lambda: (var.set("greenlet"), var.get())[1])
        in_greenlet = await wait_greenlet(g)
        return in_greenlet, var.get()

    assert run(main()) == ("greenlet", "task")


def test_blocking_cooperative_code_inside_a_coroutine_parks_the_loop_greenlet_and_other_greenlets_run():
    """A blocking call in a coroutine (here a ferrovent Event's wait, as a patched blocking call would be) does not
    deadlock: other greenlets run meanwhile, the loop's own tasks wait until the call returns."""
    order = []
    event = Event()

    def setter():
        order.append("greenlet ran")
        event.set()

    async def other_task():
        order.append("other task ran")

    async def main():
        asyncio.get_running_loop().create_task(other_task())
        ferrovent.spawn(setter)
        assert event.wait(BOUND)
        order.append("coroutine resumed")
        await asyncio.sleep(0)

    run(main())
    assert order == ["greenlet ran", "coroutine resumed", "other task ran"]


def test_tcp_server_and_clients_with_streams_and_protocols():
    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data.upper())

    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]

        async def client(i):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"hello %d" % i)
            data = await reader.readexactly(len(b"hello %d" % i))
            writer.close()
            await writer.wait_closed()
            return data

        results = await asyncio.gather(*(client(i) for i in range(20)))
        server.close()
        await server.wait_closed()
        return results

    assert run(main()) == [b"HELLO %d" % i for i in range(20)]


def test_subprocess_exec_and_signal_handler_and_getaddrinfo():
    async def main():
        loop = asyncio.get_running_loop()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "print('child')", stdout=asyncio.subprocess.PIPE
        )
        out, _ = await proc.communicate()
        got_signal = loop.create_future()
        loop.add_signal_handler(signal.SIGUSR1, got_signal.set_result, "signalled")
        os.kill(os.getpid(), signal.SIGUSR1)
        signalled = await got_signal
        loop.remove_signal_handler(signal.SIGUSR1)
        infos = await loop.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)
        return out, proc.returncode, signalled, infos[0][4]

    assert run(main()) == (b"child\n", 0, "signalled", ("127.0.0.1", 80))


def test_a_loop_that_is_not_running_does_not_keep_the_hub_alive():
    script = textwrap.dedent(
        """
        import asyncio, socket, ferrovent
        from ferrovent.asyncio import new_event_loop
        loop = new_event_loop()
        a, b = socket.socketpair()
        loop.add_reader(a, print, "never")
        loop.call_later(3600, print, "never")
        ferrovent.wait()  # returns once the hub has nothing referenced to wait for
        print("hub idle")
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert out.stdout == "hub idle\n", out.stderr


def test_closing_the_loop_forgets_its_fds():
    a, b = socket.socketpair()
    calls = []
    loop = new_event_loop()
    loop.add_reader(a, calls.append, "read")
    loop.close()
    b.send(b"x")
    ferrovent.sleep(0.01)
    assert calls == []
    a.close()
    b.close()


@pytest.fixture(params=[new_event_loop, asyncio.SelectorEventLoop], ids=["ferrovent", "stdlib"])
def ferrovent_or_stdlib_loop(request):
    """A new loop of each kind in turn, closed after the test: the scenario must go the same way on both."""
    loop = request.param()
    yield loop
    loop.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="epoll refuses regular files; kqueue takes them")
def test_a_regular_file_is_refused_as_by_the_stdlibs_epoll_selector(ferrovent_or_stdlib_loop, tmp_path):
    loop = ferrovent_or_stdlib_loop
    path = tmp_path / "file"
    path.write_bytes(b"data")
    with open(path, "rb") as file:
        with pytest.raises(PermissionError) as refused:
            loop.add_reader(file, print, "never")
        assert (refused.value.errno, refused.value.strerror) == (errno.EPERM, os.strerror(errno.EPERM))
        assert file.fileno() not in loop._selector.get_map()
    a, b = socket.socketpair()
    with a, b:
        b.send(b"x")
        assert loop.run_until_complete(loop.sock_recv(a, 1)) == b"x"  # the loop goes on


def test_callbacks_already_queued_run_before_the_io_callbacks_the_next_poll_finds(ferrovent_or_stdlib_loop):
    # asyncio queues what a poll finds behind what is already ready (uvloop runs it first): aiohttp's request loop
    # waits for every request on asyncio's order, so this is the order its figures in benches/RESULTS.md assume.
    loop = ferrovent_or_stdlib_loop
    order = []
    a, b = socket.socketpair()
    with a, b:
        b.send(b"x")  # readable before the reader is added

        def on_read():
            order.append("io")
            loop.remove_reader(a)
            loop.stop()

        def first():
            loop.add_reader(a, on_read)
            loop.call_soon(order.append, "queued")

        loop.call_soon(first)
        loop.run_forever()
    assert order == ["queued", "io"]


def test_an_fd_closed_while_registered_does_not_break_the_loop(ferrovent_or_stdlib_loop):
    loop = ferrovent_or_stdlib_loop
    a, b = socket.socketpair()
    fd = a.fileno()
    loop.add_reader(fd, lambda: None)
    a.close()
    b.close()
    c, d = socket.socketpair()  # may reuse the closed fd's number
    with c, d:
        d.send(b"x")
        assert loop.run_until_complete(loop.sock_recv(c, 1)) == b"x"
        assert loop.remove_reader(fd)
        loop.run_until_complete(asyncio.sleep(0.01))


def test_a_new_callback_for_a_closed_fd_is_kept_and_a_new_direction_refused(ferrovent_or_stdlib_loop):
    loop = ferrovent_or_stdlib_loop
    a, b = socket.socketpair()
    with b:
        fd = a.fileno()
        loop.add_reader(fd, print, "first")
        a.close()  # nothing opens an fd before the calls below: the number stays free
        loop.add_reader(fd, print, "second")  # the same direction: the stdlib's selector asks the kernel nothing
        assert fd in loop._selector.get_map()
        with pytest.raises(OSError) as refused:
            loop.add_writer(fd, print, "never")
        assert refused.value.errno == errno.EBADF
        assert fd not in loop._selector.get_map()
        assert not loop.remove_reader(fd)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="stale entries are epoll's")
def test_fds_closed_while_registered_whose_files_live_on_do_not_hide_a_ready_fd():
    # Each such fd stays in the epoll set (its file lives on through a dup) and is always ready; enough of them
    # filled the kernel's answer, which then looked empty although a registered fd was ready, and the loop parked.
    loop = new_event_loop()
    kept = []
    try:
        for _ in range(8):
            a, b = socket.socketpair()
            loop.add_reader(a.fileno(), lambda: None)
            fd = a.fileno()
            kept.append(os.dup(fd))
            a.close()
            kept.append(os.open(os.devnull, os.O_RDONLY))  # holds the number: nothing else reuses it
            assert kept[-1] == fd
            loop.remove_reader(fd)  # epoll cannot find (devnull, fd): the closed file's entry stays
            b.send(b"x")
            kept.append(b)
        c, d = socket.socketpair()
        kept += [c, d]
        c.setblocking(False)
        got = loop.create_future()
        loop.add_reader(c.fileno(), lambda: got.done() or got.set_result(c.recv(1)))
        sender = threading.Timer(0.05, d.send, (b"y",))  # sent while the loop waits, or before: either way it reads
        sender.start()
        guard = loop.call_later(BOUND, lambda: got.done() or got.set_result("parked until the guard"))
        assert loop.run_until_complete(got) == b"y"
        guard.cancel()
        sender.join(BOUND)
    finally:
        loop.close()
        for item in kept:
            item.close() if isinstance(item, socket.socket) else os.close(item)


def test_a_closed_fds_number_reused_while_still_registered_is_watched_again():
    # the stdlib's EpollSelector is not told when only the data changes, and would wait for ever here
    loop = new_event_loop()
    try:
        a, b = socket.socketpair()
        c, d = socket.socketpair()
        with a, b, c, d:
            loop.add_reader(a, lambda: None)
            os.dup2(c.fileno(), a.fileno())  # a's file closes; its number, still registered, now names c's
            a.setblocking(False)
            loop.call_later(0.01, d.send, b"x")
            assert loop.run_until_complete(asyncio.wait_for(loop.sock_recv(a, 1), BOUND)) == b"x"
    finally:
        loop.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_childs_registrations_do_not_change_the_parents():
    script = textwrap.dedent(
        """
        import asyncio, os, socket
        from ferrovent.asyncio import new_event_loop

        async def main():
            loop = asyncio.get_running_loop()
            a, b = socket.socketpair()
            seen = asyncio.Event()
            loop.add_reader(a, seen.set)
            pid = os.fork()
            if pid == 0:  # the child drops the reader and polls: an epoll instance shared with the parent would lose it
                loop.remove_reader(a)
                b.send(b"x")
                ready = loop._selector.select(0)
                os._exit(0 if all(key.fd != a.fileno() for key, _ in ready) else 3)
            while (status := os.waitpid(pid, os.WNOHANG))[0] == 0:
                await asyncio.sleep(0.01)
            await asyncio.wait_for(seen.wait(), 5)
            return os.waitstatus_to_exitcode(status[1])

        loop = new_event_loop()
        print("child", loop.run_until_complete(main()), "parent's reader ran")
        loop.close()
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert out.stdout == "child 0 parent's reader ran\n", out.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_while_the_loop_waits_gets_its_own_epoll_instance_at_once():
    script = textwrap.dedent(
        """
        import os, socket
        import ferrovent
        from ferrovent.asyncio import new_event_loop
        from ferrovent.socket import wait_read

        loop = new_event_loop()
        a, b = socket.socketpair()
        told_r, told_w = os.pipe()
        parent = os.getpid()

        def on_read():
            if os.getpid() != parent:
                os._exit(0)  # the child's reader ran

        def forker():
            pid = os.fork()  # while the loop's greenlet waits in select()
            if pid == 0:
                ferrovent.spawn_later(5.0, os._exit, 3)
                wait_read(told_r)  # the parent has dropped the reader: on a shared instance, the child's too
                b.send(b"x")
                return
            loop.remove_reader(a)
            os.write(told_w, b"!")
            while (status := os.waitpid(pid, os.WNOHANG))[0] == 0:
                ferrovent.sleep(0.01)
            print("child", os.waitstatus_to_exitcode(status[1]))
            loop.call_soon(loop.stop)

        loop.add_reader(a, on_read)
        ferrovent.spawn_later(0.05, forker)
        loop.run_forever()
        loop.close()
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert out.stdout == "child 0\n", out.stderr


def test_debug_mode_under_patch_all_lets_other_greenlets_call_in_and_refuses_other_threads():
    script = textwrap.dedent(
        """
        from ferrovent import monkey
        monkey.patch_all()
        import asyncio, ferrovent
        from ferrovent.asyncio import new_event_loop

        loop = new_event_loop()
        loop.set_debug(True)

        def try_call_soon(future):
            try:
                loop.call_soon(future.set_result, "accepted")
            except RuntimeError:
                loop.call_soon_threadsafe(future.set_result, "refused")

        async def main():
            from_greenlet, from_thread = loop.create_future(), loop.create_future()
            ferrovent.spawn(try_call_soon, from_greenlet)
            monkey.get_original("_thread", "start_new_thread")(try_call_soon, (from_thread,))
            return await asyncio.wait_for(asyncio.gather(from_greenlet, from_thread), 5)

        print(loop.run_until_complete(main()))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert out.stdout == "['accepted', 'refused']\n", out.stderr


def test_patched_time_sleep_inside_a_coroutine_lets_greenlets_run_and_then_the_loop_goes_on():
    script = textwrap.dedent(
        """
        from ferrovent import monkey
        monkey.patch_all()
        import asyncio, time, ferrovent
        from ferrovent.asyncio import new_event_loop

        order = []

        async def other_task():
            order.append("other task")

        async def main():
            asyncio.get_running_loop().create_task(other_task())
            ferrovent.spawn(order.append, "greenlet")
            time.sleep(0.05)  # patched: parks this loop's greenlet in the hub
            order.append("coroutine after sleep")
            await asyncio.sleep(0)

        new_event_loop().run_until_complete(main())
        print(order)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert out.stdout == "['greenlet', 'coroutine after sleep', 'other task']\n", out.stderr


def test_greenlets_get_their_turn_while_the_asyncio_loop_never_waits():
    """A task that only ever ``await asyncio.sleep(0)`` keeps asyncio's select from waiting; a greenlet behind a
    timer, one blocked in recv and one just spawned still run before the task stops spinning (it stops only once
    all three have, so the order proves they ran while asyncio was busy)."""
    order = []
    green_in, task_out = socket.socketpair()
    green_in = _green(green_in)

    def reader():
        order.append(("greenlet read", green_in.recv(16)))

    async def busy():
        ferrovent.spawn(reader)
        ferrovent.spawn_later(0.02, order.append, ("greenlet timer", None))
        await asyncio.sleep(0)
        task_out.send(b"ping")
        ferrovent.spawn(order.append, ("greenlet spawned", None))
        spins = 0
        while len(order) < 3:
            await asyncio.sleep(0)
            spins += 1
        order.append(("task done", spins))

    try:
        run(busy())
    finally:
        green_in.close()
        task_out.close()
    assert {what for what, _ in order[:3]} == {"greenlet read", "greenlet timer", "greenlet spawned"}
    assert order[3][0] == "task done" and order[3][1] > 0
    assert dict(order)["greenlet read"] == b"ping"


def test_a_greenlet_and_the_asyncio_loop_waiting_on_one_fd_are_both_woken():
    a, b = socket.socketpair()
    seen = []

    def greenlet_side():
        green_socket.wait_read(a.fileno(), timeout=BOUND)
        seen.append("greenlet")

    async def main():
        loop = asyncio.get_running_loop()
        task_saw = loop.create_future()
        loop.add_reader(a, task_saw.set_result, "task")
        waiter = ferrovent.spawn(greenlet_side)
        await asyncio.sleep(0.01)  # both are parked on the fd now, neither has seen it ready
        assert seen == [] and not task_saw.done()
        b.send(b"x")
        seen.append(await task_saw)
        loop.remove_reader(a)
        await wait_greenlet(waiter)

    try:
        run(main())
    finally:
        a.close()
        b.close()
    assert sorted(seen) == ["greenlet", "task"]
