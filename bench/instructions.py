"""
Instructions per proxied request, this tree against another revision, in
one invocation: a deterministic measure of what a change costs on the data
path, where wrk's throughput on a shared machine swings by 10-20% between
rounds.

Each side runs the same in-process loop under C{valgrind --tool=callgrind}:
a gateway (L{echogate.testing.GatewayHarness}: the real site, channel,
request, router, plugin runner and response writing; an in-memory upstream)
answering keep-alive requests on one connection, with the cyclic
collector off (a settled node runs with a high young threshold) and a
fixed hash seed. Two runs per side (C{--small} and C{--large} requests)
cancel start-up: the difference divided by the count is one request.

With C{--stack NAME} (a stack of L{bench.stack}, such as C{realistic})
or C{--lean}, each side runs L{bench.stack.build_path} instead: echogate's
own upstream client on an in-memory connection answering as nginx does,
which is the whole of a proxied request's Python work (the loop above
leaves the upstream client out); this tree's C{bench/stack.py} is used on
both sides.

Run: C{.venv/bin/python bench/instructions.py [--base REV|none] [--plugins
header-echo] [--stack realistic] [--lean]}. Prints instructions per
request for each side and the ratio (C{--base none}: this tree only).
Needs valgrind.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

if __package__ in (None, ""):
    sys.path.insert(0, str(REPO))

from bench.stack import STACKS  # noqa: E402

#: The loop each side runs (argv: count, comma-separated plugin names).
LOOP = r'''
import gc, sys
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from echogate.testing import GatewayHarness
from echogate.registry import load_plugins
names = [n for n in sys.argv[2].split(",") if n]
plugins = list(load_plugins(tuple(names)).values()) if names else []
h = GatewayHarness(plugins, configs=[(p.name, {}) for p in plugins])
proto = h.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
t = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000),
                    hostAddress=IPv4Address("TCP", "127.0.0.1", 8000))
proto.makeConnection(t)
raw = (b"GET /100b HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: wrk\r\nAccept: */*\r\n"
       b"X-Request-Echo: hello\r\n\r\n")
gc.collect(); gc.freeze(); gc.disable()
for i in range(int(sys.argv[1])):
    proto.dataReceived(raw)
    h.clock.advance(0)
    if i == 0 and not t.value().startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"unexpected answer: {t.value()[:200]!r}")
    t.clear()
'''

#: The loop of C{--stack} and C{--lean} (argv: count, plugins, stack name,
#: the path of this tree's C{bench/stack.py}).
LEAN_LOOP = r'''
import gc, importlib.util, sys
spec = importlib.util.spec_from_file_location("bench_stack", sys.argv[4])
stack = importlib.util.module_from_spec(spec)
spec.loader.exec_module(stack)
names = [n for n in sys.argv[2].split(",") if n]
one, sent, clear = stack.build_path(names, stack.STACKS[sys.argv[3]] if sys.argv[3] else None)
one()
if not sent().startswith(b"HTTP/1.1 200") or not sent().endswith(b"x" * 100):
    raise SystemExit(f"unexpected answer: {sent()[:300]!r}")
clear()
gc.collect(); gc.freeze(); gc.disable()
for i in range(int(sys.argv[1])):
    one()
    clear()
'''


def instructions(tree: Path, count: int, plugins: str, directory: Path, lean: bool = False,
                 stack: str = "") -> int:
    """
    The instructions callgrind counts for the loop of C{count} requests
    with echogate imported from C{tree} (with C{lean} or a C{stack}: the
    loop through the lean client, L{LEAN_LOOP}).
    """
    script = directory / "loop.py"
    lean = lean or bool(stack)
    script.write_text(LEAN_LOOP if lean else LOOP)
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
    extra = [stack, str(REPO / "bench" / "stack.py")] if lean else []
    out = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={directory / 'cg.out'}",
                          sys.executable, str(script), str(count), plugins, *extra],
                         env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"the loop failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    match = re.search(r"Collected : (\d+)", out.stderr)
    if match is None:
        raise SystemExit(f"callgrind printed no count:\n{out.stderr[-2000:]}")
    return int(match.group(1))


def per_request(tree: Path, small: int, large: int, plugins: str, directory: Path, lean: bool = False,
                stack: str = "") -> float:
    """
    Instructions per request: the difference between a loop of C{large}
    requests and one of C{small}, divided by the difference.
    """
    return (instructions(tree, large, plugins, directory, lean, stack)
            - instructions(tree, small, plugins, directory, lean, stack)) / (large - small)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="HEAD~1", help="the revision to compare against (git; none: no comparison)")
    parser.add_argument("--plugins", default="", help="comma-separated plugins on the route")
    parser.add_argument("--stack", default="", choices=("", *STACKS),
                        help="a plugin stack of bench/stack.py on the route (with its consumer and key)")
    parser.add_argument("--lean", action="store_true",
                        help="through the lean upstream client (bench/stack.py's loop), without a stack")
    parser.add_argument("--small", type=int, default=300)
    parser.add_argument("--large", type=int, default=2300)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="echogate-instructions-") as tmp:
        directory = Path(tmp)
        if arguments.base == "none":
            ours = per_request(REPO, arguments.small, arguments.large, arguments.plugins, directory,
                               arguments.lean, arguments.stack)
            print(f"this tree: {ours:,.0f} instructions per request")
            return
        base_tree = directory / "base"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(base_tree),
                        arguments.base], check=True)
        try:
            ours = per_request(REPO, arguments.small, arguments.large, arguments.plugins, directory,
                               arguments.lean, arguments.stack)
            base = per_request(base_tree, arguments.small, arguments.large, arguments.plugins, directory,
                               arguments.lean, arguments.stack)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base_tree)], check=False)
    print(f"this tree: {ours:,.0f} instructions per request")
    print(f"base {arguments.base}: {base:,.0f} instructions per request")
    print(f"this tree / base: {ours / base:.3f}")


if __name__ == "__main__":
    main()
