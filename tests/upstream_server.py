"""
A real upstream HTTP server for integration tests, on 127.0.0.1.

Paths:
  - C{/slow?delay=S}: answers after S seconds (records when the client went away);
  - C{/big?size=N}: streams N bytes with a producer, honouring back-pressure;
  - C{/reset}: aborts the connection without answering;
  - C{/stall}: announces 1000 bytes, sends 10, then nothing (records when the client went away);
  - C{/truncate}: announces 1000 bytes, sends 10, then cuts the connection;
  - C{/status/NNN}: answers with that status;
  - C{/hop}: answers with hop-by-hop headers that must not reach the client;
  - C{/via}: answers with a Via header (as a cache before it would);
  - C{/echo-header?name=H&delay=S}: answers, after S seconds, with header H's value in the body;
  - anything else: 200 with the request it saw as JSON.
"""
from __future__ import annotations

import json
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.web import server
from twisted.web.resource import Resource


def _arg(request: Any, name: bytes, default: bytes) -> bytes:
    return request.args.get(name, [default])[0]


class _BigBody:
    """
    Writes C{size} bytes, pausing when the client connection is full.
    """

    def __init__(self, request: Any, size: int, upstream: "UpstreamResource"):
        self._request = request
        self._left = size
        self._paused = False
        self._upstream = upstream
        self._chunk = b"x" * 65536

    def start(self) -> None:
        self._request.registerProducer(self, True)
        self.resumeProducing()

    def pauseProducing(self) -> None:
        self._paused = True
        self._upstream.pauses += 1

    def resumeProducing(self) -> None:
        self._paused = False
        while not self._paused and self._left > 0:
            chunk = self._chunk if self._left >= len(self._chunk) else self._chunk[: self._left]
            self._left -= len(chunk)
            self._request.write(chunk)
        if self._left == 0 and self._request.producer is self:
            self._request.unregisterProducer()
            self._request.finish()

    def stopProducing(self) -> None:
        self._left = 0
        self._upstream.stopped += 1


class UpstreamResource(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, Any]] = []
        self.client_ports: list[int] = []
        self.gone: list[bytes] = []
        self.pauses = 0
        self.stopped = 0
        self.went_away: Deferred = Deferred()

    def render(self, request: Any) -> Any:
        body = request.content.read()
        seen = {
            "method": request.method.decode(),
            "uri": request.uri.decode("latin-1"),
            "path": request.path.decode("latin-1"),
            "headers": {k.decode().lower(): [v.decode("latin-1") for v in vs]
                        for k, vs in request.requestHeaders.getAllRawHeaders()},
            "body": body.decode("latin-1"),
            "body_length": len(body),
        }
        self.seen.append(seen)
        self.client_ports.append(request.getClientAddress().port)
        path = request.path
        if path == b"/slow":
            delay = float(_arg(request, b"delay", b"1"))
            call = reactor.callLater(delay, self._answer, request, seen)

            def gone(_: Any) -> None:
                if call.active():
                    call.cancel()
                self.gone.append(request.uri)
                if not self.went_away.called:
                    self.went_away.callback(request.uri)

            request.notifyFinish().addErrback(gone)
            return server.NOT_DONE_YET
        if path == b"/big":
            _BigBody(request, int(_arg(request, b"size", b"1000")), self).start()
            return server.NOT_DONE_YET
        if path == b"/stall":
            request.setHeader(b"content-length", b"1000")
            request.write(b"x" * 10)
            request.notifyFinish().addErrback(lambda _: self.gone.append(request.uri))
            return server.NOT_DONE_YET
        if path == b"/reset":
            request.transport.abortConnection()
            return server.NOT_DONE_YET
        if path == b"/truncate":
            request.setHeader(b"content-length", b"1000")
            request.write(b"x" * 10)
            reactor.callLater(0.05, request.transport.abortConnection)
            return server.NOT_DONE_YET
        if path.startswith(b"/status/"):
            request.setResponseCode(int(path.rsplit(b"/", 1)[1]))
            request.setHeader(b"content-type", b"application/json")
            return json.dumps(seen).encode()
        if path == b"/hop":
            request.setHeader(b"keep-alive", b"timeout=5")
            request.setHeader(b"x-end-to-end", b"passes")
            return b"hop"
        if path == b"/via":
            request.setHeader(b"via", b"1.0 cache-a")
            return b"via"
        if path == b"/echo-header":
            name = _arg(request, b"name", b"x-request-echo")
            delay = float(_arg(request, b"delay", b"0"))
            value = request.getHeader(name) or b""
            def answer() -> None:
                if not request._disconnected:
                    request.write(value)
                    request.finish()
            reactor.callLater(delay, answer)
            return server.NOT_DONE_YET
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(seen).encode()

    def _answer(self, request: Any, seen: dict) -> None:
        if request._disconnected:
            return
        request.setHeader(b"content-type", b"application/json")
        request.write(json.dumps(seen).encode())
        request.finish()


class _TrackingSite(server.Site):
    def __init__(self, *a: Any, **kw: Any):
        super().__init__(*a, **kw)
        self.protocols: list[Any] = []

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        self.protocols.append(protocol)
        return protocol


def start_upstream(testcase: Any) -> tuple[UpstreamResource, int]:
    """
    Start the upstream on 127.0.0.1 (a free port); stopped at the end of
    C{testcase}.
    """
    resource = UpstreamResource()
    site = _TrackingSite(resource)
    site.noisy = False
    site.log = lambda request: None
    port = reactor.listenTCP(0, site, interface="127.0.0.1", backlog=1024)

    def stop() -> Deferred:
        d = port.stopListening()
        for protocol in site.protocols:
            # (Site's protocol wraps the HTTPChannel, which has the transport)
            transport = getattr(getattr(protocol, "_channel", protocol), "transport", None)
            if transport is not None and transport.connected:
                transport.abortConnection()
        return d

    testcase.addCleanup(stop)
    return resource, port.getHost().port
