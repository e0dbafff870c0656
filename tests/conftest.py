"""Shared fixtures.

ferrovent is imported for real everywhere: if the extension is missing the suite fails loudly, never skips.
"""

from __future__ import annotations

import importlib

import pytest

from tests.compat.runner import IMPLS


@pytest.fixture(params=IMPLS)
def impl_name(request) -> str:
    """``"gevent"`` or ``"ferrovent"``: for tests that run the same thing on both, usually in a subprocess."""
    return request.param


@pytest.fixture
def impl(impl_name):
    """The imported implementation module. Import only: two hubs in one process is fragile, so tests that switch
    greenlets on both implementations run in a subprocess (see tests/compat/runner.py)."""
    return importlib.import_module(impl_name)
