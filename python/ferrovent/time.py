"""The stdlib ``time`` module with a cooperative ``sleep``: it parks only the current greenlet.

Every public name of ``time`` is here, unchanged but for `sleep`, which is ``ferrovent.sleep`` (the loop's
Rust fast path): ``sleep(0)`` yields to the other ready greenlets, ``sleep(seconds)`` wakes after ``seconds``.
"""

from __future__ import annotations

import time as __time__

from ferrovent._core import sleep as _sleep
from ferrovent._stdlib import copy_public_names

__all__ = copy_public_names(__time__, globals())
sleep = _sleep  # in place of the blocking one just copied

__implements__ = ["sleep"]
