"""
One HTTP/2 stream on the proxy's listener (L{GatewayH2Stream}): Twisted's
C{H2Stream}, made the channel a L{echogate.proxy.request.GatewayRequest}
expects, so that a stream is a request like any other (routing, every
plugin phase, the PDK, the log record).

What it adds to Twisted's stream:
 - the head is checked at the edge as an HTTP/1.1 head is
   (L{head_problem}: the request line and header sizes, the header count,
   one C{:authority}/C{Host}, C{TRACE}), answered with the same JSON
   errors, on the stream only;
 - a request with a body is routed and authorised on its head, before any
   of the body is taken: the body waits in the stream's flow-control
   window, which is not opened again until the head passed
   (L{GatewayH2Stream.hold_body}, L{GatewayH2Stream.release_body}); a
   streamed body that the service takes more slowly pauses the same way
   (L{GatewayH2Stream.pause_body});
 - C{Expect: 100-continue} is answered only once the head passed (Twisted
   answers it at once);
 - cookies split over several C{cookie} fields are joined (RFC 9113
   section 8.2.3), for HTTP/1.1 services;
 - connection-specific response headers (C{Connection}, C{Keep-Alive},
   C{Transfer-Encoding}...) are left out, as HTTP/2 forbids them;
 - trailers after the body (L{GatewayH2Stream.write_trailers}), for gRPC;
 - the body timer (C{body_timeout} between two pieces of a body being
   read), per stream.
"""
from __future__ import annotations

import json
import re
from http import HTTPStatus
from typing import Any

from hpack import NeverIndexedHeaderTuple
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web._http2 import H2Stream

from echogate.proxy.heads import DEFAULT_LIMITS, MESSAGES, HeadLimits, head_error

__all__ = ["GatewayH2Stream", "head_problem", "CONNECTION_SPECIFIC"]

#: A request target's bytes: visible ASCII.
_VISIBLE = re.compile(rb"[\x21-\x7e]+")

#: Response fields worth HPACK's dynamic table: the same on many
#: responses. Others (dates, lengths, latencies, ids, cookies) change on
#: every one: indexing them would only evict these, and each new entry
#: costs the encoder a search of the whole table (a third of an HTTP/2
#: response's time went there).
_INDEXED = frozenset((b"server", b"via", b"content-type", b"cache-control", b"vary", b"content-encoding",
                      b"access-control-allow-origin", b"access-control-allow-credentials",
                      b"access-control-expose-headers", b"grpc-encoding", b"grpc-accept-encoding"))

#: Response fields that say no body follows: a zero content-length, or
#: gRPC's status in the head (a "trailers-only" answer).
_BODILESS = frozenset((b"content-length", b"grpc-status"))

#: Response headers HTTP/2 forbids (RFC 9113 section 8.2.2), lower case.
CONNECTION_SPECIFIC = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
                                 b"upgrade"))


def head_problem(method: bytes | None, path: bytes | None, fields: list[tuple[bytes, bytes]],
                 limits: HeadLimits) -> int | None:
    """
    The status an HTTP/2 request head must be refused with before
    routing, or C{None}: no C{:method} or a C{:path} that is not
    origin-form (C{CONNECT} and absolute or authority forms: 400) or has
    a byte no HTTP/1.1 target may hold (a space, a control or non-ASCII
    byte: 400), a
    C{:path} longer than the request line limit (414), more header fields
    than allowed or a field longer than the header line limit (431).
    C{fields} are the regular fields (no pseudo-header).
    """
    if not method or not path:
        return 400
    if path[:1] != b"/" and not (path == b"*" and method == b"OPTIONS"):
        return 400
    if not _VISIBLE.fullmatch(path):
        # Only what an HTTP/1.1 request target may hold (RFC 9112: no
        # space, control or non-ASCII byte; h2 itself lets spaces and
        # bytes past 0x7e through), as the HTTP/1.1 listener refuses them.
        return 400
    if len(path) + len(method) + 10 > limits.request_line:
        return 414
    if len(fields) > limits.headers:
        return 431
    line = limits.header_line
    for name, value in fields:
        if len(name) + len(value) + 2 > line:
            return 431
    return None


class GatewayH2Stream(H2Stream):
    """
    A request's stream on an HTTP/2 connection, standing in for the
    HTTP/1.1 channel the request would have (see the module's
    docstring).
    """

    #: The stream's L{echogate.proxy.h2.GatewayH2Connection} (which
    #: imports this module).
    _conn: Any
    #: The stream answered at the edge, or its body no longer wanted: what
    #: the client still sends is dropped (its window opened again).
    _refused = False
    #: The body waits while the head is routed and authorised.
    _held = False
    #: A streamed body waits for the service.
    _upload_paused = False
    #: Set by the exchange for HTTP/1.1 connections; nothing to do here.
    persistent = False
    _body_call: IDelayedCall | None = None
    #: A status the head was found to need while it was converted (a
    #: malformed content-length), given by L{started}.
    _refused_status: int | None = None

    def __init__(self, streamID: int, connection: Any, headers: list[tuple[bytes, bytes]],
                 requestFactory: Any, site: Any, factory: Any):
        self._fields: list[tuple[bytes, bytes]] = []
        self._authority: bytes | None = None
        super().__init__(streamID, connection, headers, requestFactory, site, factory)
        self._request._h2 = True

    @property
    def _limits(self) -> HeadLimits:
        limits: HeadLimits = getattr(self.site, "head_limits", DEFAULT_LIMITS)
        return limits

    def _convertHeaders(self, headers: list[tuple[bytes, bytes]]) -> None:
        # Twisted's: pseudo-headers to the command, path and Host; here
        # without answering 100-continue or parsing cookies, and keeping the
        # fields for the edge checks (started).
        request = self._request
        add = request.requestHeaders.addRawHeader
        cookies: list[bytes] = []
        length: bytes | None = None
        for name, value in headers:
            if name[:1] == b":":
                if name == b":method":
                    self.command = value
                elif name == b":path":
                    self.path = value
                elif name == b":authority":
                    self._authority = value
                continue
            self._fields.append((name, value))
            if name == b"cookie":
                cookies.append(value)
                continue
            if name == b"content-length":
                length = value
            add(name, value)
        if cookies:
            add(b"cookie", b"; ".join(cookies))
        authority = self._authority
        if authority is not None and request.requestHeaders.getRawHeaders(b"host") != [authority]:
            # The authority is the Host. One that differs from a Host field
            # makes two (refused by head_error: which one would the router
            # and the service each believe?).
            add(b"host", authority)
        if length is not None:
            try:
                declared: int | None = int(length)
            except ValueError:
                declared = None
            if declared is None or declared < 0 or length.strip() != length:
                self._refused_status = 400
                return
            request.gotLength(declared)
        elif self.command in (b"GET", b"HEAD"):
            request.gotLength(0)
        else:
            request.gotLength(None)

    def started(self, ended: bool) -> None:
        """
        The head is whole (C{ended}: and the stream too, no body): check it
        at the edge, then give a head with a body to the site's resource to
        route and authorise before the body is read. (A stream without a
        body is processed when its end is seen, as Twisted does.)
        """
        request = self._request
        status = self._refused_status or head_problem(self.command, self.path, self._fields, self._limits)
        if status is None:
            request.method = self.command
            status = head_error(request, b"HTTP/2")
            if status is None and self._authority is None and not request.requestHeaders.hasHeader(b"host"):
                status = 400
        self._fields = []
        if status is not None:
            self.refuse(status)
            return
        if not ended:
            request.head_received(self.command, self.path, b"HTTP/2")
            if not self._held and not self._refused:
                self._body_read()

    # -- the request body ------------------------------------------------------

    def receiveDataChunk(self, data: bytes, flowControlledLength: int) -> None:
        if self._refused:
            self._conn.openStreamWindow(self.streamID, flowControlledLength)
            return
        if self.producing:
            self._body_read()
        super().receiveDataChunk(data, flowControlledLength)

    def requestComplete(self) -> None:
        self._body_done()
        if self._refused:
            return
        super().requestComplete()

    def hold_body(self) -> None:
        """
        Take none of the body until L{release_body}: it waits in the
        stream's window (the head is being routed and authorised).
        """
        if not self._held:
            self._held = True
            self._body_done()
            self.pauseProducing()

    def release_body(self, expects_continue: bool, read: bool = True) -> None:
        """
        The head passed: take the body (after C{100 Continue} when the
        client waits for one).
        """
        if self._refused:
            return
        if not read:
            self._held = False
            return
        if expects_continue:
            self._send100Continue()
        if self._held:
            self._held = False
            self._body_read()
            self.resumeProducing()

    def pause_body(self) -> None:
        """
        Take no more of a streamed body until L{resume_body} (the service
        takes no more for now): the client's window stays shut.
        """
        if not self._upload_paused and not self._refused:
            self._upload_paused = True
            self._body_done()
            self.pauseProducing()

    def resume_body(self) -> None:
        """
        Take a streamed body again (after L{pause_body}).
        """
        if not self._upload_paused:
            return
        self._upload_paused = False
        if self._refused or self._held:
            return
        self._body_read()
        self.resumeProducing()

    def close_after_response(self) -> None:
        """
        The request is answered before its body was all read: what the
        client still sends is dropped.
        """
        self._refused = True
        self._body_done()
        self._held = False
        self._inboundDataBuffer.clear()

    def _body_read(self) -> None:
        call = self._body_call
        if call is not None:
            call.reset(self._limits.body_timeout)
        else:
            self._body_call = self._conn.callLater(self._limits.body_timeout, self._body_expired)

    def _body_done(self) -> None:
        call, self._body_call = self._body_call, None
        if call is not None and call.active():
            call.cancel()

    def _body_expired(self) -> None:
        self._body_call = None
        request = self._request
        answer = getattr(request, "answer_early", None)
        if answer is not None and not request.startedWriting:
            answer(408)
        else:
            self.refuse(408)

    # -- answering at the edge -----------------------------------------------

    def refuse(self, status: int, message: str | None = None) -> None:
        """
        Answer C{status} with a JSON error on this stream (or reset it, if
        its response has begun), take nothing more of it, and tell the
        request its client is gone.
        """
        if self._refused:
            return
        self._refused = True
        self._body_done()
        self._inboundDataBuffer.clear()
        request = self._request
        if self._conn.stream_open(self.streamID):
            if request.startedWriting:
                self.abortConnection()
            else:
                request.startedWriting = 1
                body = json.dumps({"message": message or MESSAGES.get(status, HTTPStatus(status).phrase)}).encode()
                self._conn.writeHeaders(b"HTTP/2", b"%d" % status, b"", [
                    (b"content-type", b"application/json; charset=utf-8"),
                    (b"content-length", b"%d" % len(body)),
                    (b"server", self._conn.server_header)], self.streamID)
                self._conn.writeDataToStream(self.streamID, body)
                self._conn.endRequest(self.streamID)
        if not request._disconnected:
            request.connectionLost(Failure(connectionDone))

    # -- the response ------------------------------------------------------------

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Any) -> None:
        if not self._conn.stream_open(self.streamID):
            return
        fields = [(name, value) if name in _INDEXED else NeverIndexedHeaderTuple(name, value)
                  for name, value in ((name.lower(), value) for name, values in headers.getAllRawHeaders()
                                      for value in values)
                  if name not in CONNECTION_SPECIFIC]
        if any(name in _BODILESS for name, value in fields if name != b"content-length" or value == b"0"):
            # No body follows (or a gRPC "trailers-only" answer): the head
            # waits to end the stream itself (HEADERS with END_STREAM, which
            # gRPC clients need), unless a body comes after all.
            self._pending_head = (code, fields)
            return
        self._conn.writeHeaders(version, code, reason, fields, self.streamID)

    _pending_head: tuple[bytes, list[tuple[bytes, bytes]]] | None = None

    def _send_head(self, end: bool) -> None:
        code, fields = self._pending_head  # type: ignore[misc]
        self._pending_head = None
        if end:
            self._conn.end_with_head(self.streamID, code, fields)
        else:
            self._conn.writeHeaders(b"HTTP/2", code, b"", fields, self.streamID)

    def write(self, data: bytes) -> None:
        if data and self._conn.stream_open(self.streamID):
            if self._pending_head is not None:
                self._send_head(False)
            self._conn.writeDataToStream(self.streamID, data)

    def write_trailers(self, trailers: list[tuple[bytes, bytes]]) -> None:
        """
        Send C{trailers} after the body, ending the stream with them.
        """
        if self._conn.stream_open(self.streamID):
            self._conn.trailers_for(self.streamID, [
                (name.lower(), value) for name, value in trailers
                if name.lower() not in CONNECTION_SPECIFIC and name[:1] != b":"])

    def requestDone(self, request: Any) -> None:
        if self._conn.stream_open(self.streamID):
            if self._pending_head is not None:
                self._send_head(True)
                return
            super().requestDone(request)

    def loseConnection(self) -> None:
        # For a stream, losing "the connection" resets the stream.
        self.abortConnection()

    def abortConnection(self) -> None:
        # Reset the stream (RST_STREAM), and tell the request its client
        # is gone, as a closed HTTP/1.1 connection would.
        if self._conn.stream_open(self.streamID):
            self._conn.abortRequest(self.streamID)
        self.connectionLost(Failure(ConnectionLost("stream reset by the gateway")))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._body_done()
        self._refused = True
        if not self._request._disconnected:
            super().connectionLost(reason)
