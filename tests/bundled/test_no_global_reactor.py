"""
The bundled plugins take their reactor from the node
(L{echogate.interfaces.IPluginNode}), never from C{twisted.internet.reactor}:
a walk of every module of C{echogate/bundled/} with C{ast}.
"""
from __future__ import annotations

import ast
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

BUNDLED = Path(__file__).resolve().parents[2] / "echogate" / "bundled"


def _dotted(node: ast.AST) -> str | None:
    """
    C{a.b.c} for an attribute chain on a name, else C{None}.
    """
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def global_reactor_uses(source: str) -> list[int]:
    """
    The lines of C{source} that import the global reactor or name
    C{twisted.internet.reactor}, at any depth (inside functions too).
    """
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            if node.module == "twisted.internet" and any(a.name == "reactor" for a in node.names):
                lines.append(node.lineno)
            elif node.module and (node.module + ".").startswith("twisted.internet.reactor."):
                lines.append(node.lineno)
        elif isinstance(node, ast.Import):
            if any((a.name + ".").startswith("twisted.internet.reactor.") for a in node.names):
                lines.append(node.lineno)
        elif isinstance(node, ast.Attribute) and _dotted(node) == "twisted.internet.reactor":
            lines.append(node.lineno)
    return sorted(lines)


class GlobalReactorUsesTests(SynchronousTestCase):
    """
    L{global_reactor_uses} finds every way of reaching the global reactor.
    """

    def test_found(self) -> None:
        """
        A module-level or function-level C{from twisted.internet import
        reactor} (aliased or not), C{import twisted.internet.reactor}, and
        C{twisted.internet.reactor} as an attribute.
        """
        source = "\n".join([
            "from twisted.internet import reactor",
            "def f():",
            "    from twisted.internet import defer, reactor as clock",
            "import twisted.internet.reactor",
            "import twisted",
            "x = twisted.internet.reactor.seconds()",
            "from twisted.internet.reactor import callLater",
        ])
        self.assertEqual(global_reactor_uses(source), [1, 3, 4, 6, 7])

    def test_notFound(self) -> None:
        """
        Other names of C{twisted.internet}, and attributes called
        C{reactor}, are not the global reactor.
        """
        source = "\n".join([
            "from twisted.internet import defer, task",
            "from twisted.internet.interfaces import IReactorTime",
            "import twisted.internet.defer",
            "x = node.reactor.seconds()",
            "reactor = None",
        ])
        self.assertEqual(global_reactor_uses(source), [])


class NoGlobalReactorTests(SynchronousTestCase):
    """
    No bundled module reaches the global reactor.
    """

    def test_bundled(self) -> None:
        """
        Every module of C{echogate/bundled/} takes its reactor from the
        node (or from its constructor), none from C{twisted.internet}.
        """
        modules = sorted(BUNDLED.glob("*.py"))
        self.assertTrue(modules)
        found = {path.name: global_reactor_uses(path.read_text(encoding="utf-8")) for path in modules}
        self.assertEqual({name: lines for name, lines in found.items() if lines}, {})
