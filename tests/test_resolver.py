"""ferrovent.resolver: the stdlib's answers and errors; numeric hosts and localhost inline, names in a bounded pool.

Names come from /etc/hosts only ("vm", "runsc" here), so no test ever sends a DNS query; localhost is only
compared with the stdlib for the families /etc/hosts answers (the stdlib asks DNS for the others).
"""

from __future__ import annotations

import importlib
import io
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import ferrovent
import pytest
from ferrovent import resolver
from ferrovent.threadpool import ThreadPool, hub_threadpool

from tests.child import ROOT, run_child

pytestmark = pytest.mark.timeout(20)


def hosts_file_names() -> list[str]:
    """Names other than localhost that /etc/hosts maps to an IPv4 address."""
    names = []
    with open("/etc/hosts") as hosts:
        for line in hosts:
            fields = line.split("#", 1)[0].split()
            if len(fields) >= 2 and "." in fields[0] and ":" not in fields[0]:
                names += [name for name in fields[1:] if "localhost" not in name]
    return names


NAMES = hosts_file_names()
pytestmark = [pytestmark, pytest.mark.skipif(not NAMES, reason="needs a non-localhost name in /etc/hosts")]
NAME = NAMES[0] if NAMES else "unused"


@pytest.mark.parametrize(
    "args",
    [
        ("127.0.0.1", 80),
        ("127.0.0.1", "8080", socket.AF_INET, socket.SOCK_STREAM),
        ("::1", 443, socket.AF_INET6),
        ("fe80::1%1", 0, socket.AF_INET6, socket.SOCK_DGRAM),
        (None, 80, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE),
        ("127.0.0.1", "http", 0, 0, 0, socket.AI_CANONNAME),
        ("localhost", 80, socket.AF_INET),
        ("LOCALHOST", 80),
        (NAME, 80),
        (NAME, 22, socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP),
    ],
)
def test_getaddrinfo_gives_the_stdlib_answer(args):
    assert resolver.getaddrinfo(*args) == socket.getaddrinfo(*args)


@pytest.mark.parametrize(
    "args",
    [
        (NAME, "no-such-service"),
        ("127.0.0.1", 80, 12345),
        ("127.0.0.1", 80, 0, socket.SOCK_STREAM, socket.IPPROTO_UDP),
        (NAME, 80, 0, 0, 0, socket.AI_NUMERICHOST),
        (b"\xff\xfe", 80),
        (12, 80),
        ("a" * 64 + ".example", 80),  # idna refuses a 64-character label
    ],
)
def test_getaddrinfo_raises_the_stdlib_error(args):
    with pytest.raises(Exception) as expected:
        socket.getaddrinfo(*args)
    with pytest.raises(type(expected.value)) as got:
        resolver.getaddrinfo(*args)
    assert got.value.args == expected.value.args


def test_the_other_functions_give_the_stdlib_answers():
    assert resolver.gethostbyname(NAME) == socket.gethostbyname(NAME)
    assert resolver.gethostbyname("127.0.0.1") == "127.0.0.1"
    assert resolver.gethostbyname("localhost") == socket.gethostbyname("localhost")
    assert resolver.gethostbyname_ex(NAME) == socket.gethostbyname_ex(NAME)
    assert resolver.gethostbyname_ex("127.0.0.1") == socket.gethostbyname_ex("127.0.0.1")
    assert resolver.gethostbyname_ex("localhost") == socket.gethostbyname_ex("localhost")
    assert resolver.gethostbyaddr("127.0.0.1") == socket.gethostbyaddr("127.0.0.1")
    for flags in (0, socket.NI_NUMERICHOST | socket.NI_NUMERICSERV, socket.NI_NAMEREQD):
        assert resolver.getnameinfo(("127.0.0.1", 80), flags) == socket.getnameinfo(("127.0.0.1", 80), flags)
    assert resolver.getfqdn() == socket.getfqdn()
    assert resolver.getfqdn(NAME) == socket.getfqdn(NAME)
    assert resolver.getfqdn(" 127.0.0.1 ") == socket.getfqdn(" 127.0.0.1 ")


def test_errors_from_the_pool_are_the_stdlibs_and_not_reported():
    hub = ferrovent.get_hub()
    saved, hub.exception_stream = hub.exception_stream, io.StringIO()
    try:
        # getnameinfo wants a numeric host: this gaierror comes from the system resolver in a pool thread.
        with pytest.raises(socket.gaierror) as expected:
            socket.getnameinfo((NAME, 80), 0)
        with pytest.raises(socket.gaierror) as got:
            resolver.getnameinfo((NAME, 80), 0)
        assert got.value.args == expected.value.args
        with pytest.raises(TypeError) as expected_type:
            socket.gethostbyaddr(12)
        with pytest.raises(TypeError) as got_type:
            resolver.gethostbyaddr(12)
        assert got_type.value.args == expected_type.value.args
        assert "gaierror" not in hub.exception_stream.getvalue()  # a failed lookup is not an error to report
    finally:
        hub.exception_stream = saved


def test_localhost_follows_the_hosts_file(tmp_path, monkeypatch):
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost  # v4\n::1 localhost ip6-localhost\n10.0.0.1 LOCALHOST\n")
    monkeypatch.setattr(resolver, "_HOSTS_FILE", str(hosts))
    resolver._localhost_addresses.cache_clear()
    try:
        assert resolver._localhost_addresses() == ("::1", "127.0.0.1")  # loopback only, IPv6 first
        assert [info[4][0] for info in resolver.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)] == [
            "::1",
            "127.0.0.1",
        ]
        assert resolver.getaddrinfo("localhost", 80, socket.AF_INET6, socket.SOCK_STREAM)[0][4][:2] == ("::1", 80)
        canonical = resolver.getaddrinfo("localhost", 80, 0, socket.SOCK_STREAM, 0, socket.AI_CANONNAME)
        assert [info[3] for info in canonical] == ["localhost", ""]
        hosts.write_text("# nothing about localhost\n")
        resolver._localhost_addresses.cache_clear()
        assert resolver._localhost_addresses() == ("::1", "127.0.0.1")  # RFC 6761's loopback answer
    finally:
        resolver._localhost_addresses.cache_clear()


def test_a_lookup_waiting_for_a_busy_pool_obeys_a_timeout():
    pool = hub_threadpool(ferrovent.get_hub())
    released = threading.Event()
    blockers = [pool.spawn(released.wait, 10) for _ in range(pool.maxsize)]  # every thread busy
    try:
        with pytest.raises(ferrovent.Timeout):
            with ferrovent.Timeout(0.1):
                resolver.getaddrinfo(NAME, 80)
        assert resolver.getaddrinfo("127.0.0.1", 80) == socket.getaddrinfo("127.0.0.1", 80)  # inline: no wait
    finally:
        released.set()
    assert all(blocker.get() for blocker in blockers)
    assert resolver.getaddrinfo(NAME, 80) == socket.getaddrinfo(NAME, 80)


def test_a_lookup_inside_a_pool_thread_runs_right_there():
    assert ThreadPool(1).apply(resolver.gethostbyname, (NAME,)) == socket.gethostbyname(NAME)


# -- thread counts, each in a fresh interpreter ---------------------------------------------------------------

THREADS = """
import os, socket, sys
import ferrovent
from ferrovent import resolver
from ferrovent.threadpool import hub_threadpool

def os_threads():
    return len(os.listdir("/proc/self/task"))

NAME = sys.argv[1]
"""


def test_numeric_hosts_and_localhost_start_no_thread():
    proc = run_child(
        THREADS
        + """
for _ in range(3):
    resolver.getaddrinfo("127.0.0.1", 80)
    resolver.getaddrinfo("::1", 80, socket.AF_INET6)
    resolver.getaddrinfo("localhost", 443)
    resolver.gethostbyname("10.1.2.3")
    resolver.gethostbyname_ex("localhost")
    resolver.getnameinfo(("127.0.0.1", 80), socket.NI_NUMERICHOST)
print(os_threads(), "_threadpool" in vars(ferrovent.get_hub()))
resolver.getaddrinfo(NAME, 80)  # a name: now the pool starts a thread
print(os_threads(), hub_threadpool(ferrovent.get_hub()).size)
""",
        NAME,
    )
    assert proc.stdout.split("\n") == ["1 False", "2 1", ""]


def test_fifty_concurrent_lookups_use_at_most_ten_threads():
    proc = run_child(
        THREADS
        + """
expected = socket.getaddrinfo(NAME, 80)
most = [0]

def lookup():
    answer = resolver.getaddrinfo(NAME, 80)
    most[0] = max(most[0], os_threads())
    return answer == expected

greenlets = [ferrovent.spawn(lookup) for _ in range(50)]
ferrovent.joinall(greenlets)
print(all(g.value for g in greenlets), most[0] - 1, hub_threadpool(ferrovent.get_hub()).size, os_threads() - 1)
""",
        NAME,
    )
    correct, most_threads, pool_size, threads_after = proc.stdout.split()
    assert correct == "True"
    assert 1 <= int(most_threads) <= 10
    assert 1 <= int(pool_size) <= 10 and int(threads_after) == int(pool_size)


def test_sigint_with_a_resolver_thread_alive_interrupts_the_main_greenlet_at_once():
    code = THREADS + textwrap.dedent(
        """
        resolver.getaddrinfo(NAME, 80)  # leaves an idle resolver thread behind
        assert os_threads() == 2
        print("ready", flush=True)
        try:
            ferrovent.sleep(5)  # the parent sends SIGINT to the process meanwhile
        except KeyboardInterrupt:
            print("KeyboardInterrupt", flush=True)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, NAME], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline() == "ready\n"
        time.sleep(0.2)  # let it reach the poll (if it has not, the interrupt is just as prompt)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        assert child.stdout.readline() == "KeyboardInterrupt\n"
        assert time.monotonic() - sent < 0.5
        assert child.wait(10) == 0
    finally:
        child.kill()
        child.communicate()


def test_resolver_objects_as_gevent_has_them():
    from ferrovent.resolver import blocking, thread

    for resolver_object in (thread.Resolver(), blocking.Resolver()):
        assert resolver_object.getaddrinfo("127.0.0.1", 80, 0, socket.SOCK_STREAM) == socket.getaddrinfo(
            "127.0.0.1", 80, 0, socket.SOCK_STREAM
        )
        assert resolver_object.gethostbyname("127.0.0.1") == "127.0.0.1"
        resolver_object.close()
    assert thread.Resolver().pool is ferrovent.get_hub().threadpool


@pytest.mark.parametrize("backend", ["ares", "dnspython"])
def test_resolvers_ferrovent_lacks_refuse_to_import(backend):
    with pytest.raises(ImportError, match=f"ferrovent has no .*{backend[:3]}"):
        importlib.import_module(f"ferrovent.resolver.{backend}")
