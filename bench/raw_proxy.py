"""
The floor of a Python proxy on Twisted: bare C{Protocol}s (no
C{twisted.web}, no routing, no plugins) on echogate's reactor and with its
write batching (L{echogate.batching}), that pass each head of a keep-alive
client connection to the upstream over a kept-alive connection of a pool,
with Host rewritten and X-Forwarded-For added, and pass the upstream's
answer back once its Content-Length says it is whole.

It checks nothing, reads no request body and no chunked answer, and is for
the benchmark only: what echogate's reactor, its writes, the sockets and
one pass over each head cost a proxied request, next to C{raw-hello} (a
server's floor) and C{echogate} (the same exchange with everything a
gateway does). C{--reactor twisted} runs it on Twisted's reactor.

Run: C{python bench/raw_proxy.py --port 0 --upstream-port N}.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from twisted.internet import protocol
from twisted.internet.interfaces import IReactorTCP

__all__ = ["BAD_GATEWAY", "ClientSide", "UpstreamSide", "Pool", "upstream_head", "answer_length", "main"]

#: The answer to a client whose upstream connection failed.
BAD_GATEWAY = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def upstream_head(head: bytes, host: bytes, client_ip: bytes) -> bytes:
    """
    The head to send upstream for a client's C{head} (without its blank
    line): the same request line and header lines, but C{Host: host}
    instead of the client's, and C{X-Forwarded-For: client_ip} added.
    """
    lines = head.split(b"\r\n")
    out = [lines[0]]
    for line in lines[1:]:
        if line[:5].lower() != b"host:":
            out.append(line)
    out.append(b"Host: " + host)
    out.append(b"X-Forwarded-For: " + client_ip)
    out.append(b"\r\n")
    return b"\r\n".join(out)


def answer_length(data: bytes) -> int | None:
    """
    The length of the whole answer at the start of C{data} (head and
    Content-Length body), or C{None} while its head is incomplete.
    """
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    length = 0
    for line in data[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    return end + 4 + length


class UpstreamSide(protocol.Protocol):
    """
    One kept-alive connection to the upstream: sends a head for a client,
    hands the answer back to it whole, then goes back to its L{Pool}.
    """

    def __init__(self, pool: Pool, client: ClientSide, head: bytes):
        self.pool = pool
        self.buffer = b""
        #: The client waiting for an answer on this connection.
        self.client: ClientSide | None = client
        #: The head to send once connected.
        self.first: bytes | None = head

    def connectionMade(self) -> None:
        batcher = self.pool.batcher
        if batcher is not None:
            self.transport = batcher.wrap(self.transport)
        head, self.first = self.first, None
        if head is not None:
            self.transport.write(head)

    def send(self, client: ClientSide, head: bytes) -> None:
        self.client = client
        self.transport.write(head)

    def dataReceived(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        size = answer_length(buffer)
        if size is None or len(buffer) < size:
            self.buffer = buffer
            return
        self.buffer = buffer[size:]
        client, self.client = self.client, None
        self.pool.idle.append(self)
        if client is not None:
            client.answered(buffer[:size])

    def connectionLost(self, reason: Any = protocol.connectionDone) -> None:
        if self in self.pool.idle:
            self.pool.idle.remove(self)
        client, self.client = self.client, None
        if client is not None:
            client.failed()


class _Connect(protocol.ClientFactory):
    """
    Makes one upstream connection, and fails its client when it cannot.
    """

    noisy = False

    def __init__(self, side: UpstreamSide):
        self.side = side

    def buildProtocol(self, addr: Any) -> UpstreamSide:
        return self.side

    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
        client, self.side.client = self.side.client, None
        if client is not None:
            client.failed()


class Pool:
    """
    The idle upstream connections, and a new one made when none is idle.
    """

    def __init__(self, reactor: IReactorTCP, port: int, batcher: Any = None):
        self.reactor = reactor
        self.port = port
        self.batcher = batcher
        self.idle: list[UpstreamSide] = []

    def send(self, client: ClientSide, head: bytes) -> None:
        """
        Send C{head} for C{client} on an idle connection, or on a new one.
        """
        if self.idle:
            self.idle.pop().send(client, head)
            return
        self.reactor.connectTCP("127.0.0.1", self.port, _Connect(UpstreamSide(self, client, head)))


class ClientSide(protocol.Protocol):
    """
    One client connection: its heads, in order, one upstream exchange at a
    time.
    """

    def __init__(self, pool: Pool, host: bytes):
        self.pool = pool
        self.host = host
        self.buffer = b""
        self.waiting: list[bytes] = []
        self.busy = False
        self.client_ip = b""

    def connectionMade(self) -> None:
        batcher = self.pool.batcher
        if batcher is not None:
            self.transport = batcher.wrap(self.transport)
        self.client_ip = self.transport.getPeer().host.encode("ascii")

    def dataReceived(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            self.waiting.append(upstream_head(buffer[:end], self.host, self.client_ip))
            buffer = buffer[end + 4:]
        self.buffer = buffer
        self._next()

    def _next(self) -> None:
        if self.busy or not self.waiting:
            return
        self.busy = True
        self.pool.send(self, self.waiting.pop(0))

    def answered(self, answer: bytes) -> None:
        self.transport.write(answer)
        self.busy = False
        self._next()

    def failed(self) -> None:
        self.transport.write(BAD_GATEWAY)
        self.transport.loseConnection()


class _Factory(protocol.Factory):
    noisy = False

    def __init__(self, pool: Pool, host: bytes):
        self.pool = pool
        self.host = host

    def buildProtocol(self, addr: Any) -> ClientSide:
        return ClientSide(self.pool, self.host)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any)")
    parser.add_argument("--upstream-port", type=int, required=True, help="the upstream's port on 127.0.0.1")
    parser.add_argument("--backlog", type=int, default=511, help="listen backlog (nginx's default)")
    parser.add_argument("--reactor", choices=("echogate", "twisted"), default="echogate")
    arguments = parser.parse_args(argv)
    if arguments.reactor == "echogate":
        from echogate import polling

        polling.install()
    from twisted.internet import reactor

    from echogate.batching import WriteBatcher

    pool = Pool(reactor, arguments.upstream_port, WriteBatcher(reactor))
    factory = _Factory(pool, b"127.0.0.1:%d" % arguments.upstream_port)
    port: Any = reactor.listenTCP(arguments.port, factory, backlog=arguments.backlog, interface="127.0.0.1")
    print(f"listening on 127.0.0.1:{port.getHost().port}", flush=True)
    reactor.run()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
