"""
The ceiling: a bare C{twisted.web} resource that answers fixed bodies
from memory (100 bytes, or 1 MiB at C{/1mb}; a POST's body is read and
dropped). No proxy built on C{twisted.web} can beat it.

Run: C{python bench/hello.py --port 0}.
"""
from __future__ import annotations

from typing import Any

from twisted.web.resource import Resource

from listening import serve

SMALL = (b"echogate bench " * 7)[:99] + b"\n"
LARGE = b"x" * (1024 * 1024)


class Hello(Resource):
    """
    Answers C{/1mb} with 1 MiB and everything else with 100 bytes.
    """

    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        return LARGE if request.path == b"/1mb" else SMALL

    def render_POST(self, request: Any) -> bytes:
        request.content.seek(0, 2)
        return SMALL


if __name__ == "__main__":
    serve(__doc__.strip().splitlines()[0], lambda reactor, arguments: Hello())
