"""
The layout of C{echogate/} keeps the import directions that
C{docs/architecture.md} documents, and no two modules import each other.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "echogate"
DOC = ROOT / "docs" / "architecture.md"


def module_names(package: Path = PACKAGE) -> dict[str, Path]:
    """
    Every module of the package, by dotted name.
    """
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """
    The echogate modules that module C{name} imports, anywhere in it (inside
    functions and C{TYPE_CHECKING} blocks too). C{from a import b} counts as
    an import of C{a.b} when that is a module.
    """
    found = set()
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in modules else base)
    return {m for m in found if m == "echogate" or m.startswith("echogate.")}


def room_of(module: str) -> str:
    """
    The room of a module: its first name under C{echogate}.
    """
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "echogate"


def read_rooms(text: str) -> dict[str, set[str] | None]:
    """
    The table between the C{rooms} markers of docs/architecture.md: room to
    the rooms it may import (C{None} for anything).
    """
    table = text.split("<!-- rooms:", 1)[1].split("<!-- end rooms -->", 1)[0]
    allowed: dict[str, set[str] | None] = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        targets = cells[2]
        may = None if targets == "anything" else set(re.findall(r"`([\w.]+)`", targets))
        for room in re.findall(r"`([\w.]+)`", cells[0]):
            allowed[room] = may
    return allowed


def violations(modules: dict[str, Path], allowed: dict[str, set[str] | None]) -> list[str]:
    """
    Every import against the table, as C{"a imports b"}.
    """
    found = []
    for name, path in modules.items():
        room = room_of(name)
        may = allowed.get(room, set())
        for target in sorted(imports_of(name, path, modules)):
            other = room_of(target)
            if other == room or may is None or other in may:
                continue
            found.append(f"{name} imports {target} ({room} may not import {other})")
    return found


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """
    The strongly connected groups of more than one module (Tarjan).
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """
    Module to the modules it imports. A package's C{__init__} importing its
    own submodules (a re-export) is not a dependency the other way, so
    a submodule's import of its package counts as an import of nothing.
    """
    graph = {}
    for name, path in modules.items():
        graph[name] = {t for t in imports_of(name, path, modules)
                       if t != name and not name.startswith(t + ".")}
    return graph


class DocumentedDirectionsTests(SynchronousTestCase):
    """
    Every import in C{echogate/} goes a direction the architecture page
    allows.
    """

    def test_tableRead(self) -> None:
        """
        The page's table names every room of the tree.
        """
        allowed = read_rooms(DOC.read_text())
        rooms = {room_of(name) for name in module_names()}
        self.assertEqual(sorted(rooms - set(allowed)), [])

    def test_noImportAgainstDirections(self) -> None:
        """
        No module imports a room its own room may not import.
        """
        self.assertEqual(violations(module_names(), read_rooms(DOC.read_text())), [])

    def test_noCircles(self) -> None:
        """
        No two modules import each other, directly or through others.
        """
        self.assertEqual(circles(import_graph(module_names())), [])

    def test_violationFound(self) -> None:
        """
        A lower room importing a higher one is reported, also inside a
        C{TYPE_CHECKING} block.
        """
        package = Path(self.mktemp()) / "echogate"
        (package / "routing").mkdir(parents=True)
        (package / "proxy").mkdir()
        for init in (package, package / "routing", package / "proxy"):
            (init / "__init__.py").write_text("")
        (package / "proxy" / "gateway.py").write_text("from echogate.routing import router\n")
        (package / "routing" / "router.py").write_text(
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from echogate.proxy.gateway import Gateway\n")
        found = violations(module_names(package), {"routing": set(), "proxy": {"routing"}})
        self.assertEqual(found, ["echogate.routing.router imports echogate.proxy.gateway"
                                 " (routing may not import proxy)"])

    def test_circleFound(self) -> None:
        """
        Two modules that import each other (one inside a function) are a
        circle.
        """
        package = Path(self.mktemp()) / "echogate"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "a.py").write_text("import echogate.b\n")
        (package / "b.py").write_text("def f():\n    from echogate import a\n")
        self.assertEqual(circles(import_graph(module_names(package))), [["echogate.a", "echogate.b"]])

    def test_anythingRow(self) -> None:
        """
        A row whose last cell is C{anything} allows every import; a room
        missing from the table may import nothing outside itself.
        """
        allowed = read_rooms("<!-- rooms: -->\n| room | owns | may import |\n|---|---|---|\n"
                             "| `service`, `cli` | x | anything |\n| `heap` | y | nothing |\n"
                             "<!-- end rooms -->\n")
        self.assertEqual(allowed, {"service": None, "cli": None, "heap": set()})


class LayoutTests(SynchronousTestCase):
    """
    The tree keeps the shape the design fixes.
    """

    def test_noInitInTwistedPlugins(self) -> None:
        """
        No C{__init__.py} in C{twisted/} or C{twisted/plugins/} (it would
        hide every other package's drop-ins).
        """
        self.assertEqual(sorted(str(p) for p in (ROOT / "twisted").rglob("__init__.py")), [])

    def test_noUtilityModules(self) -> None:
        """
        No module is named for being a grab-bag.
        """
        bad = [name for name in module_names() if name.rpartition(".")[2] in ("utils", "util", "helpers", "common",
                                                                               "misc", "manager")]
        self.assertEqual(bad, [])


#: The rooms of the data path, whose modules stay small (issue 26: "no
#: file of the data path over about 350 lines").
DATA_PATH = ("proxy", "upstream", "pdk", "routing", "balancer")

#: The most lines a module of the data path may have.
MAX_LINES = 400


def long_modules(package: Path = PACKAGE, rooms: tuple[str, ...] = DATA_PATH,
                 limit: int = MAX_LINES) -> list[str]:
    """
    The modules of C{rooms} longer than C{limit} lines, as
    C{"echogate.room.module: N lines"}.
    """
    found = []
    for name, path in module_names(package).items():
        if room_of(name) not in rooms:
            continue
        lines = len(path.read_text().splitlines())
        if lines > limit:
            found.append(f"{name}: {lines} lines")
    return found


class ModuleSizeTests(SynchronousTestCase):
    """
    The data path is split by concern into modules of a readable size.
    """

    def test_dataPathModulesSmall(self) -> None:
        """
        No module of the data path's rooms is over L{MAX_LINES} lines.
        """
        self.assertEqual(long_modules(), [])

    def test_longModuleFound(self) -> None:
        """
        A module of a data path room over the limit is listed with its
        length; one of another room is not.
        """
        package = Path(self.mktemp()) / "echogate"
        for room in ("proxy", "admin"):
            (package / room).mkdir(parents=True)
            (package / room / "__init__.py").write_text("")
            (package / room / "big.py").write_text("x = 1\n" * 5)
        (package / "proxy" / "small.py").write_text("x = 1\n" * 4)
        self.assertEqual(long_modules(package, ("proxy",), 4), ["echogate.proxy.big: 5 lines"])


class PackagingTests(SynchronousTestCase):
    """
    C{pip install .} installs every part of the gateway.
    """

    def test_everyPackageInstalled(self) -> None:
        """
        setup.py's packages are every package under C{echogate/} (a new room
        missing from them would be absent from a non-editable install).
        """
        from setuptools import find_packages

        on_disk = {".".join(p.relative_to(ROOT).parts) for p in PACKAGE.rglob("__init__.py")
                   for p in [p.parent]}
        found = set(find_packages(str(ROOT), include=["echogate", "echogate.*"]))
        self.assertEqual(on_disk, found)
        self.assertIn('find_packages(include=["echogate", "echogate.*"])', (ROOT / "setup.py").read_text())
