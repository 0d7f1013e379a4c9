"""
The service's side of a WebSocket handshake the gateway passes on: which
requests ask for one (L{is_websocket_upgrade}), one connection per
handshake, never pooled (L{UpgradeConnection}: it writes the request head,
reads the answer's head and, after C{101 Switching Protocols}, carries raw
bytes), and the opening of that connection with the service's connect
timeout, retries and TLS (L{open_upgrade}).
"""
from __future__ import annotations

import base64
import hashlib
import typing
from typing import Any, Callable, Mapping

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import wrapClientTLS
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http_headers import Headers
from zope.interface import implementer

from echogate.interfaces import IUpstreamResponse
from echogate.upstream.endpoints import client_endpoint
from echogate.upstream.failures import failure_answer, is_connect_failure
from echogate.upstream.h1parse import ResponseParser
from echogate.upstream.h1syntax import HTTPParseError
from echogate.upstream.hop_by_hop import listed_names, split_response_head
from echogate.upstream.tls import TLSConnectors, host_of

#: The longest answer head read (as the lean client's limit).
MAX_HEAD = 64 * 1024
#: The longest body of an answer other than 101 (it is read whole, then
#: answered as any response).
MAX_ANSWER = 1024 * 1024
#: What RFC 6455 appends to a handshake's key before hashing it.
_WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_value(key: bytes) -> bytes:
    """
    The C{Sec-WebSocket-Accept} a WebSocket server answers to the
    C{Sec-WebSocket-Key} C{key} (RFC 6455 section 4.2.2).
    """
    return base64.b64encode(hashlib.sha1(key.strip() + _WEBSOCKET_GUID).digest())


def _head_value(head: bytes, name: bytes) -> bytes | None:
    """
    The value of the first C{name} line of a request head the gateway
    wrote (one line per header, C{name: value}), or C{None}.
    """
    for line in head.split(b"\r\n")[1:]:
        field, colon, value = line.partition(b":")
        if colon and field.strip().lower() == name:
            return value.strip()
    return None


def _switches(raw: list[tuple[bytes, bytes]], key: bytes | None) -> bool:
    """
    Whether a 101's header lines C{raw} complete a WebSocket handshake
    whose key was C{key}: C{Upgrade: websocket}, C{Connection: upgrade}
    and the C{Sec-WebSocket-Accept} of C{key}. A 101 without them (a
    service that answers 101 to anything, or a status the client chose)
    would hand the client a raw connection to the service, where its next
    requests would pass no plugin.
    """
    if key is None:
        return False
    values: dict[bytes, list[bytes]] = {}
    for name, value in raw:
        values.setdefault(name.lower(), []).append(value)
    return (b"websocket" in listed_names(values.get(b"upgrade", []))
            and b"upgrade" in listed_names(values.get(b"connection", []))
            and [value.strip() for value in values.get(b"sec-websocket-accept", [])] == [accept_value(key)])


def is_websocket_upgrade(headers: Headers) -> bool:
    """
    Whether a request's headers ask to switch to the WebSocket protocol:
    an C{upgrade} token in a Connection header and a C{websocket} token in
    an Upgrade header (both lists, compared without case).
    """
    upgrade = headers.getRawHeaders(b"upgrade")
    if not upgrade or b"websocket" not in listed_names(upgrade):
        return False
    connection = headers.getRawHeaders(b"connection")
    return connection is not None and b"upgrade" in listed_names(connection)


class UpgradeEvents(typing.Protocol):
    """
    What an L{UpgradeConnection} tells whoever opened it
    (L{echogate.proxy.tunnel.Tunnel} provides it).
    """

    def switched(self, response: "UpgradeResponse", rest: bytes) -> None:
        """The service answered 101; C{rest} is what came after the head."""

    def answered(self, response: "UpgradeResponse") -> None:
        """The service answered something else, read whole."""

    def refused(self, reason: Failure) -> None:
        """No usable answer: the connection closed, or the answer is bad."""

    def tunnel_data(self, data: bytes) -> None:
        """Bytes from the service, after the switch."""

    def tunnel_lost(self, reason: Failure) -> None:
        """The connection closed, after the switch."""


@implementer(IPushProducer)
class _Delivered:
    """
    The transport of a body that is already whole: nothing to pause.
    """

    stopped = False

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        self.stopped = True


@implementer(IUpstreamResponse)
class UpgradeResponse:
    """
    The answer to a handshake (L{IUpstreamResponse}), its body read whole.
    """

    #: HTTP/1.1 responses carry no trailers (L{IUpstreamResponse.trailers}).
    trailers: list[tuple[bytes, bytes]] | None = None

    def __init__(self, code: int, phrase: bytes, raw: list[tuple[bytes, bytes]], body: bytes | None):
        self.code = code
        self.phrase = phrase
        self.raw_headers = raw
        self.end_to_end, _, _, self.via = split_response_head(raw)
        self.length = len(body) if body is not None else None
        self._body = body

    def whole_body(self) -> bytes | None:
        body, self._body = self._body, None
        return body

    def deliverBody(self, protocol: Any) -> None:
        transport = _Delivered()
        protocol.makeConnection(transport)
        body, self._body = self._body, None
        if body and not transport.stopped:
            protocol.dataReceived(body)
        protocol.connectionLost(Failure(ResponseDone()))


_HEAD, _BODY, _TUNNEL, _DONE = range(4)


class UpgradeConnection(Protocol):
    """
    One connection to a service for one handshake: writes C{head}, reads
    the answer (parsed by L{ResponseParser}); after a 101 every byte goes
    to C{events.tunnel_data}, and is written with L{write}.
    """

    #: The service's connection: TCP, or TLS over it.
    transport: Any

    def __init__(self, head: bytes, events: UpgradeEvents):
        self._head: bytes | None = head
        self._key = _head_value(head, b"sec-websocket-key")
        self._events = events
        self._state = _HEAD
        self._buffer = b""
        self._parser = ResponseParser(self)
        self._raw: list[tuple[bytes, bytes]] = []
        self._phrase = b""
        self._headed = self._complete = False
        self._framed = False
        self._body: list[bytes] = []
        self._size = 0

    # -- the parser's callbacks ------------------------------------------------

    def on_status(self, phrase: bytes) -> None:
        self._phrase = phrase

    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw.append((name, value))
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self._framed = True

    def on_headers_complete(self) -> None:
        self._headed = True

    def on_body(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > MAX_ANSWER:
            raise HTTPParseError("answer to an upgrade over %d bytes" % MAX_ANSWER)
        self._body.append(data)

    def on_message_complete(self) -> None:
        self._complete = True

    # -- the connection --------------------------------------------------------

    def connectionMade(self) -> None:
        head, self._head = self._head, None
        if head is not None:
            self.transport.write(head)

    def write(self, data: bytes) -> None:
        """
        Send C{data} to the service (after the switch).
        """
        self.transport.write(data)

    def dataReceived(self, data: bytes) -> None:
        state = self._state
        if state == _TUNNEL:
            self._events.tunnel_data(data)
            return
        try:
            if state == _HEAD:
                self._read_head(data)
            elif state == _BODY:
                self._parser.feed_data(data)
                self._maybe_answered()
        except HTTPParseError:
            self._refuse(Failure())

    def _read_head(self, data: bytes) -> None:
        buffer = self._buffer + data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    raise HTTPParseError("answer head too long")
                self._buffer = buffer
                return
            head, buffer = buffer[:end + 4], buffer[end + 4:]
            self._headed = self._complete = False
            self._raw = []
            self._parser.feed_data(head)
            code = self._parser.get_status_code()
            if code == 101:
                if not _switches(self._raw, self._key):
                    raise HTTPParseError("101 answer that does not complete the WebSocket handshake")
                self._state = _TUNNEL
                self._buffer = b""
                self._events.switched(UpgradeResponse(code, self._phrase, self._raw, None), buffer)
                return
            if code >= 200:
                break
            # (an interim 1xx: the answer follows)
        self._buffer = b""
        self._state = _BODY
        if buffer:
            self._parser.feed_data(buffer)
        self._maybe_answered()

    def _maybe_answered(self) -> None:
        if not self._complete or self._state != _BODY:
            return
        self._state = _DONE
        response = UpgradeResponse(self._parser.get_status_code(), self._phrase, self._raw, b"".join(self._body))
        self._body = []
        self.transport.loseConnection()
        self._events.answered(response)

    def _refuse(self, reason: Failure) -> None:
        if self._state in (_HEAD, _BODY):
            self._state = _DONE
            self.transport.abortConnection()
            self._events.refused(reason)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        state = self._state
        if state == _TUNNEL:
            self._state = _DONE
            self._events.tunnel_lost(reason)
        elif state == _BODY and self._headed and not self._framed:
            # A close-delimited body: complete at the close.
            self._complete = True
            self._maybe_answered()
        elif state in (_HEAD, _BODY):
            self._state = _DONE
            self._events.refused(reason)


class _OneConnection(Factory):
    noisy = False

    def __init__(self, conn: UpgradeConnection):
        self._conn = conn

    def buildProtocol(self, addr: Any) -> UpgradeConnection:
        return self._conn


def connectors_of(client: Any) -> TLSConnectors:
    """
    The TLS connectors of the node's upstream client (the Agent client's,
    or a set with the lean client's C{tls_verify}), so that a handshake to
    an https service is verified as its other requests are.
    """
    tls = getattr(client, "tls", None)
    if isinstance(tls, TLSConnectors):
        return tls
    made = getattr(client, "_upgrade_tls", None)
    if not isinstance(made, TLSConnectors):
        made = TLSConnectors(default_verify=getattr(client, "_tls_verify", True))
        try:
            client._upgrade_tls = made
        except AttributeError:
            pass
    return made


def open_upgrade(reactor: Any, service: Mapping[str, Any], headers: list[tuple[bytes, bytes]],
                 connection: Callable[[], UpgradeConnection], connectors: TLSConnectors) -> Deferred[UpgradeConnection]:
    """
    Connect a fresh C{connection()} to C{service} (TCP, or TLS for an
    https service, verified as its TLS policy says, for the Host of
    C{headers}), retrying connection failures up to the service's
    C{retries}.

    @return: fires with the connected L{UpgradeConnection}, or fails with
        an L{echogate.errors.ProxyError} (502, 504 on a connect timeout);
        cancelling it stops the attempt in progress.
    """
    host = service["host"]
    scheme = service.get("protocol") or "http"
    port = service.get("port") or (443 if scheme == "https" else 80)
    endpoint = client_endpoint(reactor, host, port, service.get("connect_timeout", 60000) / 1000.0)
    attempt: list[Deferred[Any]] = []
    left = [service.get("retries", 5)]

    def cancel(_: Deferred[UpgradeConnection]) -> None:
        left[0] = -1  # (no retry of the cancelled attempt)
        if attempt and not attempt[0].called:
            attempt[0].cancel()

    result: Deferred[UpgradeConnection] = Deferred(cancel)
    try:
        if scheme == "https":
            policy = connectors.policy_of(service)
            _, connector = connectors.connector(policy, policy.server_name or host_of(headers) or host)
            endpoint = wrapClientTLS(connector, endpoint)
    except Exception as e:
        result.errback(failure_answer(e, False))
        return result

    def connected(conn: UpgradeConnection) -> None:
        if not result.called:
            result.callback(conn)

    def failed(failure: Failure) -> None:
        if result.called or left[0] < 0:
            return
        if is_connect_failure(failure.value) and left[0] > 0:
            left[0] -= 1
            go()
            return
        result.errback(failure_answer(failure.value, False))

    def go() -> None:
        d = endpoint.connect(_OneConnection(connection()))
        attempt[:] = [d]
        d.addCallbacks(connected, failed)

    go()
    return result


__all__ = ["MAX_HEAD", "MAX_ANSWER", "UpgradeConnection", "UpgradeEvents", "UpgradeResponse", "accept_value",
           "connectors_of",
           "is_websocket_upgrade", "open_upgrade"]
