"""
What the baseline servers share: a C{Site} without an access log (as
echogate runs by default) and a main that listens on 127.0.0.1, prints
the port, and runs the reactor until C{SIGTERM}.

The baseline scripts import this as a sibling module (they are run by
path, C{python bench/hello.py}), and they stay valid Python 3.9 so that
Debian's C{pypy3} runs them too.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

from twisted.web.server import Site


class QuietSite(Site):
    """
    A C{Site} that writes no access log line (the log costs about a fifth
    of a small server's throughput, and echogate's is off by default).
    """

    noisy = False

    def log(self, request: Any) -> None:
        pass


def serve(description: str, make_resource: Callable[[Any, argparse.Namespace], Any],
          add_arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None,
          make_site: Callable[[Any, Any], Any] = lambda reactor, resource: QuietSite(resource)) -> None:
    """
    Parse C{--port} (0 for any) and the script's own arguments, listen on
    127.0.0.1 with C{make_resource(reactor, arguments)} as the root of
    C{make_site(reactor, resource)} (a L{QuietSite}), print C{listening on
    127.0.0.1:PORT}, and run until stopped.
    """
    from twisted.internet import reactor

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any)")
    parser.add_argument("--backlog", type=int, default=511, help="listen backlog (nginx's default)")
    add_arguments(parser)
    arguments = parser.parse_args()
    site = make_site(reactor, make_resource(reactor, arguments))
    port = reactor.listenTCP(arguments.port, site, backlog=arguments.backlog, interface="127.0.0.1")
    print(f"listening on 127.0.0.1:{port.getHost().port}", flush=True)
    reactor.run()
    sys.stdout.flush()
