"""
Habits of the code base that a reader cannot see failing: each test reads
the source (with L{ast}) or the project's files, not running code.

  - Every L{twisted.logger.Logger} in echogate names its namespace, so a
    log filter does not break when a module moves, and none is a class
    attribute (Twisted's descriptor replaces a class attribute's namespace
    with C{module.Class}).
  - No errback swallows a failure silently, and no broad C{except} passes.
  - Every dependency has a C{>=} floor, and tests/lowest.txt (the tests
    .ci/run runs at those floors) names modules that exist.
  - The changelog fragments in changelog.d/ have the names towncrier reads.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import tomllib
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Iterator

from twisted.trial.unittest import SynchronousTestCase

HERE = Path(__file__).resolve().parent.parent
PACKAGE = HERE / "echogate"

#: Loggers without a namespace (or declared on a class) in files other
#: changes were editing when this test came in: path -> how many. Fix them
#: and lower the count (L{LoggerNamespaceTests} asks for the exact count,
#: so this only shrinks).
ALLOWED_LOGGERS: dict[str, int] = {}

#: Silent errbacks and broad excepts that pass, in files other changes
#: were editing: path -> how many. Only shrinks, like L{ALLOWED_LOGGERS}.
ALLOWED_SILENT: dict[str, int] = {}

#: The fragment types towncrier.toml declares (see CONTRIBUTING.md).
FRAGMENT_TYPES = {"feature", "bugfix", "plugin-api", "operator", "doc", "misc"}


def sources() -> Iterator[tuple[str, ast.Module]]:
    """
    Every module under C{echogate/}: its path from the repository root and
    its syntax tree.
    """
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(HERE).as_posix(), ast.parse(path.read_text(encoding="utf-8"))


def _is_logger_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Name) and func.id == "Logger") or (
        isinstance(func, ast.Attribute) and func.attr == "Logger")


def logger_problems(tree: ast.Module) -> list[str]:
    """
    Each C{Logger(...)} in C{tree} that names no namespace, or that is
    assigned in a class body.
    """
    problems = []
    for node in ast.walk(tree):
        if _is_logger_call(node):
            assert isinstance(node, ast.Call)
            if not node.args and not any(k.arg == "namespace" for k in node.keywords):
                problems.append(f"line {node.lineno}: Logger() without namespace=")
        if isinstance(node, ast.ClassDef):
            for statement in node.body:
                value = statement.value if isinstance(statement, (ast.Assign, ast.AnnAssign)) else None
                if value is not None and _is_logger_call(value):
                    problems.append(f"line {statement.lineno}: Logger() as a class attribute of {node.name}")
    return problems


#: The methods of a Deferred whose argument (by position or keyword) is
#: called with a Failure.
_ERRBACK_ARGUMENTS = {"addErrback": (0, "errback"), "addBoth": (0, "callback"),
                      "addCallbacks": (1, "errback")}
_BROAD = {"Exception", "BaseException"}


def _does_nothing(body: list[ast.stmt]) -> bool:
    """
    Whether C{body} only passes, continues, or returns nothing (a
    docstring aside).
    """
    for statement in body:
        if isinstance(statement, (ast.Pass, ast.Continue)):
            continue
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
            continue
        if isinstance(statement, ast.Return) and (
                statement.value is None or (isinstance(statement.value, ast.Constant)
                                            and statement.value.value is None)):
            continue
        return False
    return True


def _ignores_failure(function: ast.AST) -> bool:
    """
    Whether C{function} (a lambda or a def) drops the failure it is given:
    its body returns C{None} (or does nothing) and never reads its first
    argument.
    """
    if isinstance(function, ast.Lambda):
        body_returns_none = isinstance(function.body, ast.Constant) and function.body.value in (None, Ellipsis)
        arguments = function.args
        body: ast.AST = function.body
    elif isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
        body_returns_none = _does_nothing(function.body)
        arguments = function.args
        body = ast.Module(body=function.body, type_ignores=[])
    else:
        return False
    if not body_returns_none:
        return False
    names = [a.arg for a in arguments.posonlyargs + arguments.args if a.arg != "self"]
    used = {n.id for n in ast.walk(body) if isinstance(n, ast.Name)}
    return not names or names[0] not in used


def silent_problems(tree: ast.Module) -> list[str]:
    """
    Each place in C{tree} that swallows a failure without a trace:

      - an errback (the argument of C{addErrback}, C{addBoth}, or the
        errback of C{addCallbacks}) that ignores its failure and returns
        C{None}: a lambda such as C{lambda _: None}, or a function of the
        same module whose body only passes;
      - a bare C{except:}, C{except Exception:} or C{except
        BaseException:} whose body only passes (or continues, or returns
        nothing).

    Narrow excepts that pass (C{except KeyError: pass}) are deliberate
    and allowed; so are errbacks that turn a failure into a value
    (C{lambda _: False}), log it, or use it.
    """
    functions = {node.name: node for node in ast.walk(tree)
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in _ERRBACK_ARGUMENTS:
            position, keyword = _ERRBACK_ARGUMENTS[node.func.attr]
            candidates = [node.args[position]] if len(node.args) > position else []
            candidates += [k.value for k in node.keywords if k.arg == keyword]
            for candidate in candidates:
                target: ast.AST | None = candidate
                if isinstance(candidate, ast.Name):
                    target = functions.get(candidate.id)
                elif isinstance(candidate, ast.Attribute) and isinstance(candidate.value, ast.Name) \
                        and candidate.value.id == "self":
                    target = functions.get(candidate.attr)
                if target is not None and _ignores_failure(target):
                    problems.append(f"line {node.lineno}: {node.func.attr} drops the failure")
        if isinstance(node, ast.ExceptHandler):
            caught = node.type
            names = []
            if caught is None:
                names = ["Exception"]
            else:
                for element in caught.elts if isinstance(caught, ast.Tuple) else [caught]:
                    if isinstance(element, ast.Name):
                        names.append(element.id)
            if _BROAD & set(names) and _does_nothing(node.body):
                problems.append(f"line {node.lineno}: broad except that passes")
    return problems


def _load_lowest_pins() -> ModuleType:
    """
    Import .ci/lowest_pins.py (the script .ci/run uses to pin the floors).
    """
    spec = importlib.util.spec_from_file_location("lowest_pins", HERE / ".ci" / "lowest_pins.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _CheckTestCase(SynchronousTestCase):
    def assertCounts(self, check: str, found: dict[str, list[str]], allowed: dict[str, int]) -> None:
        """
        Each file has exactly as many problems as C{allowed} lets it have
        (none, unless listed).
        """
        counts = Counter({path: len(problems) for path, problems in found.items() if problems})
        wrong = {path: (counts.get(path, 0), allowed.get(path, 0))
                 for path in set(counts) | set(allowed) if counts.get(path, 0) != allowed.get(path, 0)}
        report = "\n".join(f"{path}: {have} found, {may} allowed ({check}): {found.get(path, [])}"
                           for path, (have, may) in sorted(wrong.items()))
        self.assertEqual(wrong, {}, report)


class LoggerNamespaceTests(_CheckTestCase):
    def test_everyLoggerNamesItsNamespace(self) -> None:
        """
        Each C{Logger(...)} in echogate passes C{namespace=} and is not a
        class attribute.
        """
        found = {path: logger_problems(tree) for path, tree in sources()}
        self.assertCounts("logger", found, ALLOWED_LOGGERS)

    def test_rule(self) -> None:
        """
        The check flags a bare C{Logger()} and a class attribute, and
        passes a module-level C{Logger(namespace=...)}.
        """
        self.assertEqual(len(logger_problems(ast.parse("_log = Logger()"))), 1)
        self.assertEqual(len(logger_problems(ast.parse(
            "class A:\n    _log = Logger(namespace='x')"))), 1)
        self.assertEqual(logger_problems(ast.parse("_log = logger.Logger(namespace='echogate.x')")), [])


class SilentFailureTests(_CheckTestCase):
    def test_noSilentErrbacks(self) -> None:
        """
        No errback in echogate drops its failure without a trace, and no
        broad C{except} only passes.
        """
        found = {path: silent_problems(tree) for path, tree in sources()}
        self.assertCounts("silent", found, ALLOWED_SILENT)

    def test_flagged(self) -> None:
        """
        The check flags the shapes that swallow a failure.
        """
        for source in ["d.addErrback(lambda _: None)",
                       "d.addBoth(lambda f: None)",
                       "d.addCallbacks(ok, lambda _: None)",
                       "d.addCallbacks(ok, errback=lambda _: None)",
                       "def ignore(failure):\n    pass\nd.addErrback(ignore)",
                       "try:\n    x()\nexcept Exception:\n    pass",
                       "try:\n    x()\nexcept:\n    pass",
                       "try:\n    x()\nexcept (OSError, BaseException):\n    return"]:
            self.assertEqual(len(silent_problems(ast.parse(source))), 1, source)

    def test_allowed(self) -> None:
        """
        Errbacks that use, log or translate the failure, and narrow
        excepts, pass the check.
        """
        for source in ["d.addErrback(lambda _: False)",
                       "d.addErrback(lambda f: f.trap(KeyError))",
                       "d.addErrback(log.failure, 'x')",
                       "d.addBoth(lambda _: self._release())",
                       "d.addCallbacks(lambda _: None, self.report)",
                       "try:\n    x()\nexcept KeyError:\n    pass",
                       "try:\n    x()\nexcept Exception:\n    log.failure('x')"]:
            self.assertEqual(silent_problems(ast.parse(source)), [], source)


class DependencyFloorTests(SynchronousTestCase):
    def test_everyRequirementHasAFloor(self) -> None:
        """
        Each of setup.py's install_requires has one C{>=} floor, which
        .ci/run pins exactly in .venv-lowest.
        """
        pins = _load_lowest_pins()
        for requirement in pins.requirements(HERE / "setup.py"):
            pinned = pins.pin(requirement)
            self.assertRegex(pinned, r"^[A-Za-z0-9._-]+==[0-9][^;\s]*(;.*)?$")
        self.assertRaises(ValueError, pins.pin, "Twisted")
        self.assertRaises(ValueError, pins.pin, "Twisted<25")
        self.assertEqual(pins.pin("Twisted[tls]>=24.10"), "Twisted==24.10")

    def test_lowestModulesExist(self) -> None:
        """
        Every module tests/lowest.txt names is a test module of this tree.
        """
        lines = (HERE / "tests" / "lowest.txt").read_text().splitlines()
        names = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        self.assertNotEqual(names, [])
        missing = [name for name in names if not (HERE / (name.replace(".", "/") + ".py")).is_file()]
        self.assertEqual(missing, [])


class ChangelogTests(SynchronousTestCase):
    def test_fragmentTypes(self) -> None:
        """
        towncrier.toml declares the fragment types CONTRIBUTING.md lists.
        """
        config = tomllib.loads((HERE / "towncrier.toml").read_text())["tool"]["towncrier"]
        self.assertEqual({t["directory"] for t in config["type"]}, FRAGMENT_TYPES)
        self.assertEqual(config["directory"], "changelog.d")

    def test_fragmentNames(self) -> None:
        """
        Each fragment in changelog.d/ is named C{<issue>.<type>.md} (or
        C{<issue>.<type>.<n>.md}) with a declared type, and says something.
        """
        name = re.compile(r"^(\d+|\+[\w-]+)\.(?P<type>[\w-]+)(\.\d+)?\.md$")
        for fragment in sorted((HERE / "changelog.d").iterdir()):
            if fragment.name.startswith("."):
                continue
            match = name.match(fragment.name)
            self.assertIsNotNone(match, fragment.name)
            assert match is not None
            self.assertIn(match["type"], FRAGMENT_TYPES, fragment.name)
            self.assertTrue(fragment.read_text().strip(), fragment.name)
