"""
The ceiling of any server on Twisted: a bare C{Protocol} (no
C{twisted.web}) that answers every GET head of a keep-alive connection
with a fixed 100-byte response from memory, on echogate's reactor
(L{echogate.polling.GatewayReactor}; C{--reactor twisted} for Twisted's
default). It checks nothing and reads no bodies: a measure of what the
reactor, the sockets and one pass over a head cost, next to C{hello}
(the same answer through C{twisted.web}).

Run: C{python bench/raw_hello.py --port 0}.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from twisted.internet import protocol

SMALL = (b"echogate bench " * 7)[:99] + b"\n"
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nContent-Type: text/plain\r\n"
            b"Server: raw-hello\r\n\r\n" + SMALL)


class RawHello(protocol.Protocol):
    """
    Answers each whole head (up to its blank line) with L{RESPONSE}, its
    request line and header lines split as a server would split them;
    what follows a head's blank line is the next head.
    """

    def __init__(self) -> None:
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        answers = []
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            lines = buffer[:end].split(b"\r\n")
            method, target, version = lines[0].split(b" ", 2)
            for line in lines[1:]:
                line.partition(b":")
            answers.append(RESPONSE)
            buffer = buffer[end + 4:]
        self.buffer = buffer
        if answers:
            self.transport.write(b"".join(answers))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any)")
    parser.add_argument("--backlog", type=int, default=511, help="listen backlog (nginx's default)")
    parser.add_argument("--reactor", choices=("echogate", "twisted"), default="echogate")
    arguments = parser.parse_args(argv)
    if arguments.reactor == "echogate":
        from echogate import polling

        polling.install()
    from twisted.internet import reactor

    factory = protocol.Factory.forProtocol(RawHello)
    factory.noisy = False
    port: Any = reactor.listenTCP(arguments.port, factory, backlog=arguments.backlog,
                                  interface="127.0.0.1")
    print(f"listening on 127.0.0.1:{port.getHost().port}", flush=True)
    reactor.run()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
