#!/usr/bin/env python3
"""
A small, dependency-free mutation runner for echogate.

It parses one module with L{ast}, lists the places where a small change
(a I{mutant}) can be made, and for each chosen mutant writes the mutated
module into a B{copy} of the source tree and runs a set of trial test
modules against that copy.  A mutant is I{killed} when the tests fail, it
I{survives} when they pass, and it I{times out} when they run longer than
the per-mutant timeout.  The checkout this script lives in is never
written to.

Usage::

    .venv/bin/python tools/mutation.py \\
        --module echogate/routing/paths.py \\
        --tests tests.routing.test_paths,tests.routing.test_router \\
        --limit 60 --seed 1

Mutants, see L{_mutationsFor}:

  - comparison operators: C{<} to C{<=} and C{>=}, C{==} to C{!=}, C{in} to
    C{not in}, C{is} to C{is not} (and back);
  - boolean operators: C{and} to C{or} and back;
  - C{not x} to C{x};
  - integer constants: C{n} to C{n + 1} and C{n - 1};
  - C{return X} to C{return None} in functions annotated C{-> bool};
  - the condition of a statement-level C{if} to C{True} and to C{False};
  - C{continue} to C{break} and back.

Every survivor is printed as C{file:line: description}; see
C{docs/testing.md} for the last recorded score.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = os.path.join(ROOT, ".venv", "bin", "python")

# What each comparison operator becomes: its boundary neighbour and its
# negation.
_COMPARE_SWAPS = {
    ast.Lt: (ast.LtE, ast.GtE),
    ast.LtE: (ast.Lt, ast.Gt),
    ast.Gt: (ast.GtE, ast.LtE),
    ast.GtE: (ast.Gt, ast.Lt),
    ast.Eq: (ast.NotEq,),
    ast.NotEq: (ast.Eq,),
    ast.Is: (ast.IsNot,),
    ast.IsNot: (ast.Is,),
    ast.In: (ast.NotIn,),
    ast.NotIn: (ast.In,),
}

_OP_TEXT = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.In: "in",
    ast.NotIn: "not in",
}


@dataclass(frozen=True)
class Mutant:
    """
    One change to one node of the module.

    @ivar ident: the mutant's number in the full, ordered list of mutants of
        the module (stable for a given source text; use it with C{--only}).
    @ivar nodeIndex: the node's position in L{ast.walk} order.
    @ivar variant: which of the node's mutations this is.
    @ivar line: the node's line in the original source.
    @ivar description: what the mutant changes, for people.
    """

    ident: int
    nodeIndex: int
    variant: int
    line: int
    description: str


Apply = Callable[[ast.AST, List[ast.AST]], None]


def _boolFunctionReturns(tree: ast.AST) -> set:
    """
    The C{id}s of the C{return X} nodes directly inside functions annotated
    C{-> bool} (not inside nested functions).
    """
    found = set()

    def visit(node: ast.AST, inBool: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                ann = child.returns
                isBool = isinstance(ann, ast.Name) and ann.id == "bool"
                isBool = isBool or (
                    isinstance(ann, ast.Constant) and ann.value == "bool"
                )
                visit(child, isBool)
            elif isinstance(child, ast.Lambda):
                visit(child, False)
            else:
                if (
                    inBool
                    and isinstance(child, ast.Return)
                    and child.value is not None
                    and not (
                        isinstance(child.value, ast.Constant)
                        and child.value.value is None
                    )
                ):
                    found.add(id(child))
                visit(child, inBool)

    visit(tree, False)
    return found


def _docstringIds(tree: ast.AST) -> set:
    """
    The C{id}s of docstring expression statements, which are never mutated.
    """
    ids = set()
    for node in ast.walk(tree):
        if isinstance(
            node,
            (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef),
        ):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
            ):
                ids.add(id(body[0].value))
    return ids


def _replaceChild(parent: ast.AST, old: ast.AST, new: ast.AST) -> None:
    """
    Put C{new} where C{old} is among C{parent}'s fields.
    """
    for name, value in ast.iter_fields(parent):
        if value is old:
            setattr(parent, name, new)
            return
        if isinstance(value, list):
            for i, item in enumerate(value):
                if item is old:
                    value[i] = new
                    return
    raise LookupError("child not found")


def _mutationsFor(
    node: ast.AST, boolReturns: set, docstrings: set
) -> Iterator[Tuple[str, Callable[[ast.AST, ast.AST], None]]]:
    """
    The mutations of one node: pairs of a description and a function that
    applies it given C{(node, parent)}.
    """
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            for new in _COMPARE_SWAPS.get(type(op), ()):

                def apply(n, parent, i=i, new=new):
                    n.ops[i] = new()

                yield (
                    f"comparison {_OP_TEXT[type(op)]!r} -> {_OP_TEXT[new]!r}",
                    apply,
                )
    elif isinstance(node, ast.BoolOp):
        other = ast.Or if isinstance(node.op, ast.And) else ast.And
        names = {ast.And: "and", ast.Or: "or"}

        def apply(n, parent, other=other):
            n.op = other()

        yield (f"{names[type(node.op)]!r} -> {names[other]!r}", apply)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):

        def apply(n, parent):
            _replaceChild(parent, n, n.operand)

        yield ("'not' removed", apply)
    elif (
        isinstance(node, ast.Constant)
        and type(node.value) is int
        and id(node) not in docstrings
    ):
        for delta in (1, -1):

            def apply(n, parent, delta=delta):
                n.value = n.value + delta

            yield (f"constant {node.value} -> {node.value + delta}", apply)
    elif isinstance(node, ast.Return) and id(node) in boolReturns:

        def apply(n, parent):
            n.value = ast.Constant(value=None)

        yield ("'return X' -> 'return None' in a bool function", apply)
    elif isinstance(node, ast.If):
        for value in (True, False):

            def apply(n, parent, value=value):
                n.test = ast.Constant(value=value)

            yield (f"if condition -> {value}", apply)
    elif isinstance(node, ast.Continue):

        def apply(n, parent):
            _replaceChild(parent, n, ast.Break())

        yield ("'continue' -> 'break'", apply)
    elif isinstance(node, ast.Break):

        def apply(n, parent):
            _replaceChild(parent, n, ast.Continue())

        yield ("'break' -> 'continue'", apply)


def _walkWithParents(tree: ast.AST) -> List[Tuple[ast.AST, Optional[ast.AST]]]:
    """
    Every node of C{tree} with its parent, in a fixed order.
    """
    out: List[Tuple[ast.AST, Optional[ast.AST]]] = []
    stack: List[Tuple[ast.AST, Optional[ast.AST]]] = [(tree, None)]
    while stack:
        node, parent = stack.pop(0)
        out.append((node, parent))
        stack.extend((child, node) for child in ast.iter_child_nodes(node))
    return out


def listMutants(source: str) -> List[Mutant]:
    """
    All the mutants of a module's source, in node order.
    """
    tree = ast.parse(source)
    boolReturns = _boolFunctionReturns(tree)
    docstrings = _docstringIds(tree)
    mutants = []
    for index, (node, _parent) in enumerate(_walkWithParents(tree)):
        for variant, (description, _) in enumerate(
            _mutationsFor(node, boolReturns, docstrings)
        ):
            mutants.append(
                Mutant(
                    ident=len(mutants),
                    nodeIndex=index,
                    variant=variant,
                    line=getattr(node, "lineno", 0),
                    description=description,
                )
            )
    return mutants


def mutate(source: str, mutant: Mutant) -> str:
    """
    The source of the module with C{mutant} applied.
    """
    tree = ast.parse(source)
    boolReturns = _boolFunctionReturns(tree)
    docstrings = _docstringIds(tree)
    node, parent = _walkWithParents(tree)[mutant.nodeIndex]
    mutations = list(_mutationsFor(node, boolReturns, docstrings))
    description, apply = mutations[mutant.variant]
    assert description == mutant.description, (description, mutant)
    apply(node, parent)
    ast.fix_missing_locations(tree)
    return ast.unparse(tree) + "\n"


def _ignore(directory: str, names: Sequence[str]) -> List[str]:
    return [
        n
        for n in names
        if n in (".git", ".venv", "__pycache__", ".mypy_cache", "bench")
        or n.startswith("_trial_temp")
        or n.endswith(".pyc")
    ]


def copyTree(destination: str) -> str:
    """
    Copy the checkout (without C{.git}, C{.venv} and bytecode) to
    C{destination}/src and return that path.
    """
    target = os.path.join(destination, "src")
    shutil.copytree(ROOT, target, ignore=_ignore, symlinks=True)
    return target


def runTests(copy: str, tests: Sequence[str], timeout: float) -> str:
    """
    Run C{tests} with trial against C{copy}.

    @return: C{"passed"}, C{"failed"} or C{"timeout"}.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = copy
    # No bytecode: a rewritten module of the same size within the same
    # second would otherwise load from a stale .pyc.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    process = subprocess.Popen(
        [PYTHON, "-m", "twisted.trial", *tests],
        cwd=copy,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return "timeout"
    return "passed" if code == 0 else "failed"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--module", required=True, help="e.g. echogate/routing/paths.py")
    parser.add_argument(
        "--tests", required=True, help="comma-separated trial test modules"
    )
    parser.add_argument(
        "--limit", type=int, default=0, help="at most N mutants, sampled (0: all)"
    )
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument(
        "--only", default="", help="comma-separated mutant numbers to run"
    )
    parser.add_argument(
        "--timeout", type=float, default=0.0,
        help="per-mutant timeout in seconds (default: 3 x baseline + 10)",
    )
    parser.add_argument(
        "--list", action="store_true", help="list the mutants and exit"
    )
    parser.add_argument(
        "--show", type=int, default=None, help="print mutant N's module and exit"
    )
    options = parser.parse_args(argv)

    modulePath = options.module
    with open(os.path.join(ROOT, modulePath)) as f:
        original = f.read()
    mutants = listMutants(original)
    if options.list:
        for m in mutants:
            print(f"{modulePath}:{m.line}: #{m.ident} {m.description}")
        return 0
    if options.show is not None:
        sys.stdout.write(mutate(original, mutants[options.show]))
        return 0
    if options.only:
        wanted = {int(x) for x in options.only.split(",")}
        chosen = [m for m in mutants if m.ident in wanted]
    elif options.limit and options.limit < len(mutants):
        chosen = sorted(
            random.Random(options.seed).sample(mutants, options.limit),
            key=lambda m: m.ident,
        )
    else:
        chosen = mutants
    tests = [t for t in options.tests.split(",") if t]

    with tempfile.TemporaryDirectory(prefix="echogate-mutation-") as tmp:
        copy = copyTree(tmp)
        target = os.path.join(copy, modulePath)
        started = time.monotonic()
        baseline = runTests(copy, tests, timeout=600)
        elapsed = time.monotonic() - started
        if baseline != "passed":
            print(f"baseline run {baseline}: fix the tests first", file=sys.stderr)
            return 2
        timeout = options.timeout or (3 * elapsed + 10)
        print(
            f"{len(mutants)} mutants in {modulePath} (source sha1 "
            f"{hashlib.sha1(original.encode()).hexdigest()[:10]}); running {len(chosen)} "
            f"(baseline {elapsed:.1f}s, timeout {timeout:.0f}s)",
            flush=True,
        )
        counts = {"failed": 0, "passed": 0, "timeout": 0}
        survivors = []
        try:
            for m in chosen:
                with open(target, "w") as f:
                    f.write(mutate(original, m))
                outcome = runTests(copy, tests, timeout)
                counts[outcome] += 1
                mark = {"failed": "killed", "passed": "SURVIVED", "timeout": "timeout"}
                print(
                    f"  #{m.ident} line {m.line}: {m.description}: {mark[outcome]}",
                    flush=True,
                )
                if outcome == "passed":
                    survivors.append(m)
        finally:
            with open(target, "w") as f:
                f.write(original)

    print()
    for m in survivors:
        print(f"{modulePath}:{m.line}: #{m.ident} {m.description}")
    total = len(chosen)
    killed = counts["failed"] + counts["timeout"]
    score = 100.0 * killed / total if total else 100.0
    print(
        f"\n{modulePath}: {total} mutants, killed {counts['failed']}, "
        f"survived {counts['passed']}, timed out {counts['timeout']}; "
        f"score {score:.0f}%"
    )
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
