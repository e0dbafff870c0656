"""`Handle`: the class of the handles the Rust ``call_soon`` makes, a subclass of ``asyncio.Handle`` (or None).

The cyclic collector traverses a handle several times while it waits in the ready queue; ``asyncio.Handle``'s
traverse is CPython's generic one for ``__slots__`` classes, which walks each class's member table at every call.
This subclass, made in Rust (rust/aio_handle_type.rs), visits the same slots directly: every reference the handle
holds is still visited, so cycles through handles are collected as before. It adds no slot, is named ``Handle``
(``repr`` and error messages read as asyncio's) and is not subclassable; its methods are ``asyncio.Handle``'s,
found through the MRO (a method replaced on ``asyncio.Handle`` is what its instances run), and its deallocation is
CPython's, as for ``asyncio.Handle`` (so ``__class__`` can be assigned between the two).
``isinstance(h, asyncio.Handle)`` holds; ``type(h) is asyncio.Handle`` does not (docs/differences.md, asyncio).

It reads the member descriptors' offsets (a CPython internal), so it is made only on the Python versions listed in
`_CHECKED_PYTHONS`, and not at all when the environment says ``FERROVENT_ASYNCIO_HANDLE_CLASS=0`` (also ``false``,
``no``, ``off``): the handles are then ``asyncio.Handle`` itself, as they are with ``FERROVENT_ASYNCIO_FAST=0``.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Optional

from ferrovent import _core
from ferrovent._switches import switched_off

__all__ = ["Handle"]

# The Python versions on which the instance layout of asyncio.Handle and the slots' offsets were checked.
_CHECKED_PYTHONS = ((3, 11),)
# asyncio.Handle's object slots, in every version listed.
_SLOTS = ("_args", "_callback", "_cancelled", "_context", "_loop", "_repr", "_source_traceback")


def _make() -> Optional[type]:
    if switched_off("FERROVENT_ASYNCIO_HANDLE_CLASS") or sys.version_info[:2] not in _CHECKED_PYTHONS:
        return None
    if set(asyncio.Handle.__slots__) != {*_SLOTS, "__weakref__"} or asyncio.Handle.__bases__ != (object,):
        return None
    try:
        return _core.aio_handle_class(asyncio.Handle, list(_SLOTS))
    except TypeError:  # not laid out as checked (the Rust side looks at the instances' size and slots)
        return None


# pickle finds the class here by its __module__ and __qualname__, as it finds asyncio.Handle in asyncio.events
Handle = _make()
