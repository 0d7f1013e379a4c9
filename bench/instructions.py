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

Run: C{.venv/bin/python bench/instructions.py [--base REV] [--plugins
header-echo]}. Prints instructions per request for each side and the
ratio. Needs valgrind.
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


def instructions(tree: Path, count: int, plugins: str, directory: Path) -> int:
    """
    The instructions callgrind counts for the loop of C{count} requests
    with echogate imported from C{tree}.
    """
    script = directory / "loop.py"
    script.write_text(LOOP)
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
    out = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={directory / 'cg.out'}",
                          sys.executable, str(script), str(count), plugins],
                         env=env, capture_output=True, text=True, check=True)
    match = re.search(r"Collected : (\d+)", out.stderr)
    if match is None:
        raise SystemExit(f"callgrind printed no count:\n{out.stderr[-2000:]}")
    return int(match.group(1))


def per_request(tree: Path, small: int, large: int, plugins: str, directory: Path) -> float:
    return (instructions(tree, large, plugins, directory) - instructions(tree, small, plugins, directory)) \
        / (large - small)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="HEAD~1", help="the revision to compare against (git)")
    parser.add_argument("--plugins", default="", help="comma-separated plugins on the route")
    parser.add_argument("--small", type=int, default=300)
    parser.add_argument("--large", type=int, default=2300)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="echogate-instructions-") as tmp:
        directory = Path(tmp)
        base_tree = directory / "base"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(base_tree),
                        arguments.base], check=True)
        try:
            ours = per_request(REPO, arguments.small, arguments.large, arguments.plugins, directory)
            base = per_request(base_tree, arguments.small, arguments.large, arguments.plugins, directory)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base_tree)], check=False)
    print(f"this tree: {ours:,.0f} instructions per request")
    print(f"base {arguments.base}: {base:,.0f} instructions per request")
    print(f"this tree / base: {ours / base:.3f}")


if __name__ == "__main__":
    main()
