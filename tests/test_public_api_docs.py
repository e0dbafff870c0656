"""The public API documents itself: every public name has a docstring and type hints, and _core.pyi matches _core.

Public means: each non-underscore module of the package (gevent's documented module set, plus ferrovent's own),
each name in its ``__all__`` that ferrovent defines (re-exported stdlib names are the stdlib's business), and the
public methods and properties of those classes, inherited ones included when a ferrovent class defines them. The
docs site renders its API reference from these docstrings, so a gap here is a hole in the reference. Each test
lists every offender at once rather than stopping at the first.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ferrovent
import ferrovent._core

# Modules that exist only to refuse import with a pointer to the replacement (gevent has them; ferrovent does not).
REFUSES_IMPORT = {"ferrovent.resolver.ares", "ferrovent.resolver.dnspython"}
# Dunder methods a user calls through syntax: documented by the protocol, annotated like any method.
PROTOCOL_METHODS = {"__init__", "__call__", "__enter__", "__exit__", "__iter__", "__next__", "__len__", "__bool__"}
# Sphinx cross-reference roles (``:func:`x```, ``:class:`~x```) and the tilde shorthand: mkdocs shows them raw.
SPHINX_MARKUP = re.compile(r":[a-z]+(?::[a-z]+)?:`|(?<!`)`~")
PACKAGE_DIR = Path(ferrovent.__file__).parent
STUB = Path(ferrovent._core.__file__).with_name("_core.pyi")


def public_modules() -> list[str]:
    names = ["ferrovent"]
    for info in pkgutil.walk_packages(ferrovent.__path__, "ferrovent."):
        if any(part.startswith("_") for part in info.name.split(".")[1:]):
            continue
        if info.name in REFUSES_IMPORT:
            continue
        names.append(info.name)
    return names


def defined_by_ferrovent(obj: Any) -> bool:
    """True for ferrovent's own code; False for stdlib names re-exported, or stdlib functions rebound to our globals."""
    if not (getattr(obj, "__module__", None) or "").startswith("ferrovent"):
        return False
    code = getattr(obj, "__code__", None)
    return code is None or Path(code.co_filename).is_relative_to(PACKAGE_DIR)


def public_objects() -> Iterator[tuple[str, Any]]:
    """(qualified name, object) for each public module, the names its __all__ defines, and their members."""
    seen: set[int] = set()
    for module_name in public_modules():
        module = importlib.import_module(module_name)
        yield module_name, module
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isroutine(obj)) or not defined_by_ferrovent(obj):
                continue
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            yield f"{module_name}.{name}", obj
            if inspect.isclass(obj):
                yield from public_members(f"{module_name}.{name}", obj, seen)


def public_members(qualname: str, cls: type, seen: set[int]) -> Iterator[tuple[str, Any]]:
    """Each public method and property once, under the first public class that has it."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if defined_by_ferrovent(klass):
            names.update(vars(klass))
    for name in sorted(names):
        if name.startswith("_") and name not in PROTOCOL_METHODS:
            continue
        member = inspect.getattr_static(cls, name)
        if isinstance(member, (staticmethod, classmethod)):
            member = member.__func__
        if isinstance(member, property) or inspect.isroutine(member) or inspect.isgetsetdescriptor(member):
            owner = next(klass for klass in cls.__mro__ if name in vars(klass))
            function = member.fget if isinstance(member, property) else member
            compiled = not hasattr(function, "__module__")  # a Rust method or attribute: its class is ferrovent's
            if defined_by_ferrovent(owner) and (compiled or defined_by_ferrovent(function)) and id(member) not in seen:
                seen.add(id(member))
                yield f"{qualname}.{name}", member


def test_public_names_have_docstrings() -> None:
    missing = []
    for qualname, obj in public_objects():
        if qualname.rsplit(".", 1)[-1] in PROTOCOL_METHODS:
            continue
        if not (obj.__doc__ or "").strip():
            missing.append(qualname)
    assert not missing, f"{len(missing)} public names without a docstring:\n" + "\n".join(missing)


def test_public_docstrings_use_no_sphinx_roles() -> None:
    """The house style is prose with ``code`` markup, which both mkdocstrings and Sphinx render."""
    offenders = [qualname for qualname, obj in public_objects() if SPHINX_MARKUP.search(obj.__doc__ or "")]
    assert not offenders, "docstrings with Sphinx-only markup:\n" + "\n".join(offenders)


def test_core_stub_uses_no_sphinx_roles() -> None:
    """The API page of the compiled module is rendered from _core.pyi's docstrings."""
    offenders = [line for line in STUB.read_text().splitlines() if SPHINX_MARKUP.search(line)]
    assert not offenders, "_core.pyi lines with Sphinx-only markup:\n" + "\n".join(offenders)


def test_public_signatures_are_annotated() -> None:
    missing = []
    for qualname, obj in public_objects():
        function = obj.fget if isinstance(obj, property) else obj
        if not inspect.isfunction(function):
            continue
        signature = inspect.signature(function)
        bare = [
            name
            for index, (name, parameter) in enumerate(signature.parameters.items())
            if parameter.annotation is inspect.Parameter.empty and not (index == 0 and name in ("self", "cls"))
        ]
        if signature.return_annotation is inspect.Signature.empty:
            bare.append("return")
        if bare:
            missing.append(f"{qualname}: {', '.join(bare)}")
    assert not missing, f"{len(missing)} public signatures lacking annotations:\n" + "\n".join(missing)


def stub_names() -> set[str]:
    """The names _core.pyi declares at its top level."""
    names = set()
    for node in ast.parse(STUB.read_text()).body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
    return names


def test_core_stub_names_match_the_compiled_module() -> None:
    compiled = {name for name in dir(ferrovent._core) if not name.startswith("_")}
    stubbed = {name for name in stub_names() if not name.startswith("_")}
    assert sorted(stubbed - compiled) == [], "_core.pyi declares names the module lacks"
    assert sorted(compiled - stubbed) == [], "the module has public names _core.pyi lacks"


def test_core_stub_all_matches_the_compiled_module() -> None:
    stub_all = next(
        ast.literal_eval(node.value)
        for node in ast.parse(STUB.read_text()).body
        if isinstance(node, ast.Assign) and any(getattr(target, "id", None) == "__all__" for target in node.targets)
    )
    assert sorted(stub_all) == sorted(ferrovent._core.__all__)
