"""benches/real_stacks.py: each real-stack bench runs in its quick size on ferrovent and gives positive figures,
with the versions of its peers; a bench whose peer cannot be started here is skipped with the reason it printed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCHES_DIR = Path(__file__).resolve().parents[1] / "benches"
# bench -> (the figures its run gives, the peers it names)
RUNS = {
    "requests_fanout": (["requests_fanout"], ["nginx"]),
    "redis_clients": (["redis_clients"], ["redis-server"]),
    "flask_postgres": (["flask_postgres", "flask_postgres_p99"], ["postgres"]),
    "tls_handshakes": (["tls_handshakes", "tls_transfers", "tls_handshake_cpu", "tls_transfer_cpu"], ["openssl"]),
    "fanout_latency": (["fanout_latency"], []),
    "granian_hello": (["granian_hello", "granian_p99"], ["granian"]),
}
LOADED = {"flask_postgres", "granian_hello"}  # their runs also give the load client's share of its core
REFERENCE = {"granian_hello"}  # measured once, without either library: scenarios.py runs them as "greenlet"


def _scenario(bench: str) -> dict:
    impl = "greenlet" if bench in REFERENCE else "ferrovent"
    argv = [sys.executable, str(BENCHES_DIR / "scenarios.py"), impl, bench, "--quick", "--client", "http_load"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=100, cwd=BENCHES_DIR)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("bench", sorted(RUNS))
def test_quick_run_gives_figures_and_peer_versions(bench: str) -> None:
    line = _scenario(bench)
    if "skipped" in line:
        pytest.skip(f"{bench}: {line['skipped']}")
    figures, peers = RUNS[bench]
    assert sorted(line["values"]) == sorted(figures + (["load_client_cpu"] if bench in LOADED else []))
    assert all(line["values"][name] > 0 for name in figures)
    assert all(line["peers"].get(peer) for peer in peers), line["peers"]


def test_a_missing_peer_skips_with_its_reason(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.syspath_prepend(str(BENCHES_DIR))
    import real_stacks
    import scenarios

    monkeypatch.setattr(real_stacks.shutil, "which", lambda name: None)
    monkeypatch.setattr(real_stacks, "NGINX", "/nonexistent/nginx")
    monkeypatch.setattr(sys, "argv", ["scenarios.py", "ferrovent", "requests_fanout", "--quick"])
    scenarios.main()
    captured = capsys.readouterr()
    line = json.loads(captured.out.strip().splitlines()[-1])
    assert line["values"] == {}
    assert line["skipped"] == "nginx is not installed (Debian: apt-get install nginx-light)"
    assert "requests_fanout skipped: nginx is not installed" in captured.err


def _processes_naming(text: str) -> list[int]:
    """The pids whose command line contains `text`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                found.append(int(proc.name))
        except OSError:
            continue  # it ended while we looked
    return found


@pytest.mark.timeout(60)
def test_granian_ends_with_the_server_process_the_bench_kills(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("granian")
    monkeypatch.syspath_prepend(str(BENCHES_DIR))
    import wsgi_wrk

    with wsgi_wrk.ServerProcess("serve-wsgi", "granian") as server:
        mark = f"--port {server.port} "
        assert _processes_naming(mark), "granian is not running under the server process"
    deadline = time.monotonic() + 20
    while _processes_naming(mark) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _processes_naming(mark), "granian outlived the server process that started it"
