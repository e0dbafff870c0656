"""monkey.patch_socket() imports and runs, and the patched program still talks over sockets."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHILD = """
import importlib, sys
monkey = importlib.import_module(sys.argv[1] + ".monkey")
monkey.patch_socket()
import socket
a, b = socket.socketpair()
a.sendall(b"ping")
print(b.recv(4).decode())
"""


@pytest.mark.timeout(30)
def test_patch_socket_runs(impl_name):
    # In a subprocess: patching this test process's socket module would leak into every later test.
    proc = subprocess.run([sys.executable, "-c", CHILD, impl_name], capture_output=True, text=True, timeout=20)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ping\n"
    assert proc.stderr == ""
