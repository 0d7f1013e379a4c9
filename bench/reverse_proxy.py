"""
Twisted's own reverse proxy, as shipped: L{ReverseProxyResource} at the
root, sending every request to the upstream (HTTP/1.0 and a new upstream
connection per request).

Run: C{python bench/reverse_proxy.py --port 0 --upstream-port N}.
"""
from __future__ import annotations

from typing import Any

from twisted.web.proxy import ReverseProxyResource

from listening import serve


def _arguments(parser: Any) -> None:
    parser.add_argument("--upstream-port", type=int, required=True)


def _resource(reactor: Any, arguments: Any) -> ReverseProxyResource:
    return ReverseProxyResource("127.0.0.1", arguments.upstream_port, b"", reactor)


if __name__ == "__main__":
    serve(__doc__.strip().splitlines()[0], _resource, _arguments)
