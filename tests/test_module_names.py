"""The public names of ferrovent's modules that stand in for stdlib ones, and what they say about themselves.

A module patching a stdlib module lists its names in three groups, as gevent's do: ``__implements__`` (its own
replacements for stdlib names: what monkey-patching copies over), ``__imports__`` (stdlib objects offered as they
are) and ``__extensions__`` (names the stdlib module does not have). Tools and patch hooks read these lists, so
they must be true: each name is what its group says, and ``from module import *`` gives ``__all__``. Where
gevent's module has ``__all__`` made of exactly the three groups (``queue``, ``subprocess``), so does ferrovent's;
others (``os``, ``socket``, ...) leave the stdlib's own names out of ``__all__``, as gevent's do.
"""

from __future__ import annotations

import importlib

import pytest
from ferrovent._patcher import MAPPING

STANDING_IN = sorted((name.replace("gevent.", "ferrovent.", 1), stdlib) for name, stdlib in MAPPING.items())
ANNOTATED = [(name, stdlib) for name, stdlib in STANDING_IN if hasattr(importlib.import_module(name), "__all__")]


def _groups(module):
    return [list(getattr(module, group, None) or ()) for group in ("__implements__", "__imports__", "__extensions__")]


@pytest.mark.parametrize("name", ["ferrovent.queue", "ferrovent.subprocess", "ferrovent.resolver"])
def test_all_is_implements_imports_and_extensions(name):
    module = importlib.import_module(name)
    assert sorted(module.__all__) == sorted(sum(_groups(module), []))


@pytest.mark.parametrize("name, stdlib_name", ANNOTATED)
def test_star_import_gives_all(name, stdlib_name):
    module = importlib.import_module(name)
    star: dict = {}
    exec(f"from {name} import *", star)
    star.pop("__builtins__")
    assert sorted(star) == sorted(module.__all__)


@pytest.mark.parametrize("name, stdlib_name", ANNOTATED)
def test_each_group_means_what_it_says(name, stdlib_name):
    module, stdlib = importlib.import_module(name), importlib.import_module(stdlib_name)
    implements, imports, extensions = _groups(module)
    assert [item for item in implements if getattr(module, item) is getattr(stdlib, item, None)] == []
    assert [item for item in imports if getattr(module, item) is not getattr(stdlib, item)] == []
    assert [item for item in extensions if hasattr(stdlib, item)] == []


def test_the_resolver_has_no_stdlib_counterpart_and_says_its_names_are_its_own():
    from ferrovent import resolver

    assert getattr(resolver, "__implements__", None) is None
    assert resolver.__all__ == resolver.__extensions__ == list(resolver.__dns__)


def test_contextvars_offers_the_stdlib_classes_greenlet_makes_cooperative():
    import contextvars

    from ferrovent import contextvars as green

    assert green.__all__ == green.__imports__ == list(contextvars.__all__)
    assert all(getattr(green, name) is getattr(contextvars, name) for name in green.__all__)
