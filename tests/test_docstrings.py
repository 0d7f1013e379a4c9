"""
Every C{L{...}} cross-reference in echogate's docstrings names something
that exists.

The walk reads each module under C{echogate/} with L{ast}, collects the
module's, classes' and functions' docstrings, and resolves each
C{L{name}} (or the target of C{L{text <target>}}) the way a reader (and
pydoctor) would: from the enclosing classes, the module's own namespace,
its packages, and then as an importable dotted name. Names of
instance attributes count when the class assigns C{self.name}, declares
an attrs field, an annotation, C{__slots__} or an C{@ivar}.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import re
from pathlib import Path
from typing import Any, Iterator

import attrs
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.interface import InterfaceClass

import echogate

ROOT = Path(echogate.__file__).resolve().parent

#: C{L{text <target>}} or C{L{target}}; the target is what must resolve.
_LINK = re.compile(r"L\{(?:[^{}<]*<(?P<target>[^{}>]+)>|(?P<name>[^{}]+))\}")
_IVAR = re.compile(r"@[ic]var\s+(\w+)")

#: References that do not resolve yet, in files other changes were editing
#: when this test came in: C{(module, reference)}. Fix the docstring and
#: delete the entry; L{DocstringReferenceTests.test_allowlistOnlyShrinks}
#: fails on an entry that resolves, so this list only shrinks.
ALLOWED_UNRESOLVED: frozenset[tuple[str, str]] = frozenset()


class _Anything:
    """
    Stands for an instance attribute known only by name (assigned in
    C{__init__}, declared by C{@ivar}): any further attribute of it is
    taken on trust.
    """


_ANYTHING = _Anything()
#: What L{_Resolver.attribute} answers for a name that does not exist.
_MISSING = object()


def modules() -> Iterator[tuple[str, Path]]:
    """
    Every module under C{echogate/}, as C{(dotted name, path)}.
    """
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def _instance_names(tree: ast.AST) -> dict[str, set[str]]:
    """
    For each class in C{tree} (by qualified name), the attribute names its
    instances have without the class object showing them: C{self.x = }
    assignments, annotations, C{__slots__} entries and C{@ivar}/C{@cvar}.
    """
    found: dict[str, set[str]] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                name = f"{prefix}{child.name}"
                names = found.setdefault(name, set())
                names.update(_IVAR.findall(ast.get_docstring(child) or ""))
                for sub in ast.walk(child):
                    if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) \
                            and sub.value.id == "self" and isinstance(sub.ctx, ast.Store):
                        names.add(sub.attr)
                    if isinstance(sub, ast.AnnAssign) and isinstance(sub.target, ast.Name):
                        names.add(sub.target.id)
                    if isinstance(sub, ast.Assign) and any(
                            isinstance(t, ast.Name) and t.id == "__slots__" for t in sub.targets):
                        for elt in ast.walk(sub.value):
                            if isinstance(elt, ast.Constant) and isinstance(elt.value, str):
                                names.add(elt.value)
                visit(child, name + ".")
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, f"{prefix}{child.name}.<locals>.")

    visit(tree, "")
    return found


class _Resolver:
    """
    Resolves references for one module.
    """

    def __init__(self, module_name: str, tree: ast.AST) -> None:
        self.module = importlib.import_module(module_name)
        self.instance_names = _instance_names(tree)
        parts = module_name.split(".")
        self.packages = [importlib.import_module(".".join(parts[:i])) for i in range(len(parts) - 1, 0, -1)]

    def attribute(self, obj: Any, part: str) -> Any:
        """
        C{obj.part} as a reader means it, or L{_MISSING} when there is none.
        """
        if obj is _ANYTHING:
            return _ANYTHING
        if isinstance(obj, InterfaceClass):
            if part in obj.names(all=True):
                return obj[part]
            return _MISSING
        try:
            return getattr(obj, part)
        except AttributeError:
            pass
        except Exception:
            return _ANYTHING
        if isinstance(obj, type):
            if attrs.has(obj) and part in {f.name for f in attrs.fields(obj)}:
                return _ANYTHING
            for klass in obj.__mro__:
                if part in getattr(klass, "__annotations__", {}):
                    return _ANYTHING
                known = self.instance_names.get(klass.__qualname__) if klass.__module__ == self.module.__name__ \
                    else _instance_names_of(klass).get(klass.__qualname__)
                if known and part in known:
                    return _ANYTHING
        if hasattr(obj, "__path__"):
            try:
                return importlib.import_module(f"{obj.__name__}.{part}")
            except ImportError:
                return _MISSING
        return _MISSING

    def chain(self, start: Any, parts: list[str]) -> bool:
        obj = start
        for part in parts:
            obj = self.attribute(obj, part)
            if obj is _MISSING:
                return False
        return True

    def resolves(self, reference: str, scopes: list[Any]) -> bool:
        """
        Whether C{reference} names something from one of the C{scopes}
        (innermost first), the module, its packages, the builtins, or as
        an importable dotted name.
        """
        parts = reference.strip().rstrip("()").split(".")
        if not all(p.isidentifier() for p in parts):
            return False
        for scope in [*scopes, self.module, *self.packages, builtins]:
            if self.attribute(scope, parts[0]) is not _MISSING and self.chain(scope, parts):
                return True
        for i in range(len(parts), 0, -1):
            try:
                module = importlib.import_module(".".join(parts[:i]))
            except ImportError:
                continue
            return self.chain(module, parts[i:])
        return False


def _instance_names_of(klass: type) -> dict[str, set[str]]:
    """
    L{_instance_names} for the module that defines C{klass}, if it is one
    of echogate's.
    """
    module = getattr(klass, "__module__", "")
    if not module.startswith("echogate"):
        return {}
    path = getattr(importlib.import_module(module), "__file__", None)
    if path is None:
        return {}
    return _instance_names(ast.parse(Path(path).read_text(encoding="utf-8")))


def references(module_name: str, path: Path) -> Iterator[tuple[int, str, bool]]:
    """
    Each C{L{...}} in the docstrings of the module at C{path}, as
    C{(line, reference, resolves)}.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    resolver = _Resolver(module_name, tree)

    def visit(node: ast.AST, scopes: list[Any]) -> Iterator[tuple[int, str, bool]]:
        doc = ast.get_docstring(node, clean=False) if isinstance(
            node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) else None
        if doc:
            line = getattr(node, "lineno", 1)
            for match in _LINK.finditer(doc):
                reference = " ".join((match["target"] or match["name"]).split())
                yield line, reference, resolver.resolves(reference, scopes)
        for child in ast.iter_child_nodes(node):
            inner = scopes
            if isinstance(child, ast.ClassDef):
                owner = scopes[0] if scopes else resolver.module
                klass = resolver.attribute(owner, child.name)
                inner = [klass, *scopes] if isinstance(klass, (type, InterfaceClass)) else scopes
            yield from visit(child, inner)

    yield from visit(tree, [])


def unresolved() -> set[tuple[str, str]]:
    """
    Every C{(module, reference)} in echogate that does not resolve.
    """
    return {(name, reference)
            for name, path in modules()
            for _, reference, ok in references(name, path) if not ok}


class DocstringReferenceTests(SynchronousTestCase):
    def test_everyReferenceResolves(self) -> None:
        """
        Every C{L{...}} in echogate's docstrings names a module, class,
        function or attribute that exists.
        """
        broken = sorted(unresolved() - ALLOWED_UNRESOLVED)
        self.assertEqual(broken, [], "\n".join(f"{m}: L{{{r}}}" for m, r in broken))

    def test_allowlistOnlyShrinks(self) -> None:
        """
        Each allowed reference still fails to resolve: one that was fixed
        comes off L{ALLOWED_UNRESOLVED}.
        """
        self.assertEqual(sorted(ALLOWED_UNRESOLVED - unresolved()), [])


class ResolverTests(SynchronousTestCase):
    """
    The resolver itself, on this module's references.
    """

    def resolver(self) -> _Resolver:
        return _Resolver("echogate.settings", ast.parse("class A:\n    def f(self):\n        self.x = 1\n"))

    def test_resolvesKnownNames(self) -> None:
        """
        Module names, dotted importable names, builtins and a class's
        attrs fields resolve.
        """
        r = self.resolver()
        for name in ["Settings", "echogate.settings.Settings", "dict", "twisted.web.client.Agent",
                     "Settings.proxy_listen", "echogate.interfaces.IStore"]:
            self.assertTrue(r.resolves(name, []), name)

    def test_refusesMissingNames(self) -> None:
        """
        A name that does not exist, or an attribute a class lacks, does not
        resolve.
        """
        r = self.resolver()
        for name in ["NoSuchThing", "echogate.settings.NoSuchThing", "Settings.no_such_field",
                     "echogate.no_such_module", "not a name"]:
            self.assertFalse(r.resolves(name, []), name)

    def test_linkTargets(self) -> None:
        """
        C{L{text <target>}} resolves its target, not its text.
        """
        found = [m["target"] or m["name"] for m in _LINK.finditer("L{the settings <Settings>} and L{dict}")]
        self.assertEqual(found, ["Settings", "dict"])
