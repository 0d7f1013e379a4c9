"""
Calling another service from a plugin (an introspection endpoint, a
policy server, a webhook): L{HTTPClient}, which a node gives its plugins
as C{node.http} (L{echogate.interfaces.IPluginNode}).

It sends through the node's own upstream client, so it shares the
gateway's connection pool (kept-alive connections are reused across
plugins and the proxy), its TLS verification settings, and its clock: a
call's timeout runs on the node's reactor, the harness's C{Clock} in
tests. In L{echogate.testing.GatewayHarness} it sends to the harness's
C{outbound} handler instead of the network::

    response = await node.http.post("http://auth.internal/introspect",
                                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                                    body=b"token=" + token.encode(), timeout=2.0)
    if response.code == 200:
        claims = response.json()
"""
from __future__ import annotations

import json as _json
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import PotentialDataLoss, ResponseDone
from twisted.web.http_headers import Headers

__all__ = ["HTTPClient", "HTTPResponse", "CallFailed"]

#: The largest response body a call reads, by default (bytes).
MAX_BODY = 10 * 1024 * 1024


class CallFailed(Exception):
    """
    A call to another service got no complete response: the service
    could not be reached, broke off, took longer than the call's timeout,
    or sent a body longer than the call allows.

    @ivar url: the URL called.
    @ivar timed_out: whether the timeout ran out.

    @since: 0.1.0
    """

    def __init__(self, url: str, why: str, timed_out: bool = False):
        super().__init__(f"{url}: {why}")
        self.url = url
        self.timed_out = timed_out


@attrs.frozen
class HTTPResponse:
    """
    Another service's response, read whole.

    @ivar code: the status code.
    @ivar headers: the end-to-end headers (a L{Headers}).
    @ivar body: the body.

    @since: 0.1.0
    """

    code: int
    headers: Headers
    body: bytes

    def header(self, name: str) -> str | None:
        """
        The first value of header C{name}, or C{None}.
        """
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None

    def text(self, encoding: str = "utf-8") -> str:
        """
        The body decoded (undecodable bytes replaced).
        """
        return self.body.decode(encoding, "replace")

    def json(self) -> Any:
        """
        The body parsed as JSON.

        @raise ValueError: it is not JSON.
        """
        return _json.loads(self.body)


class _Bytes:
    """
    A request body in memory, as the upstream client takes one: a fresh
    producer per attempt, or the bytes.
    """

    def __init__(self, data: bytes):
        self._data = data
        self.length = len(data)

    def producer(self) -> "_Bytes":
        return self

    def read(self) -> bytes:
        return self._data

    def startProducing(self, consumer: Any) -> Deferred[None]:
        consumer.write(self._data)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class _Reader(Protocol):
    """
    Reads a response body, up to a limit.
    """

    def __init__(self, call: "_Call"):
        self._call = call
        self._parts: list[bytes] = []
        self._size = 0

    def dataReceived(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._call.max_body:
            self._call.fail(f"the response body is longer than {self._call.max_body} bytes")
            return
        self._parts.append(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        if reason is None:
            reason = Failure(ResponseDone())
        if reason.check(ResponseDone, PotentialDataLoss):
            self._call.body_read(b"".join(self._parts))
        else:
            self._call.fail(f"the response broke off: {reason.getErrorMessage()}")


class _Call:
    """
    One call: sends, reads the body, keeps the deadline; fires L{result}
    once.
    """

    def __init__(self, url: str, timeout: float, max_body: int, clock: IReactorTime):
        self.url = url
        self.max_body = max_body
        self.result: Deferred[HTTPResponse] = Deferred(lambda _: self._cancel())
        self._cancelling = False
        self._handle: Any = None
        self._response: Any = None
        self._reader: _Reader | None = None
        self._timer: IDelayedCall | None = clock.callLater(timeout, self._timed_out, timeout)

    def _done(self) -> bool:
        return self.result.called

    def _stop_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _abort(self) -> None:
        """
        Stop whatever is under way (cancelled, or timed out).
        """
        self._stop_timer()
        if self._response is None:
            if self._handle is not None and not getattr(self._handle, "called", False):
                self._handle.cancel()
        elif self._reader is not None and self._reader.transport is not None:
            producer: Any = self._reader.transport
            producer.stopProducing()

    def _cancel(self) -> None:
        """
        The caller cancelled: abort (the result then fails with
        C{CancelledError}).
        """
        self._cancelling = True
        self._abort()

    def _timed_out(self, timeout: float) -> None:
        self._timer = None
        if self._done():
            return
        self._fire(Failure(CallFailed(self.url, f"no complete response within {timeout} s", timed_out=True)))
        self._abort()

    def _fire(self, outcome: HTTPResponse | Failure) -> None:
        self._stop_timer()
        if self._done():
            return
        if isinstance(outcome, Failure):
            self.result.errback(outcome)
        else:
            self.result.callback(outcome)

    def fail(self, why: str, timed_out: bool = False) -> None:
        if self._done() or self._cancelling:
            return
        if self._reader is not None and self._reader.transport is not None:
            producer: Any = self._reader.transport
            producer.stopProducing()
        self._fire(Failure(CallFailed(self.url, why, timed_out)))

    def arrived(self, response: Any) -> None:
        if self._done():
            return
        self._response = response
        whole = response.whole_body()
        if whole is not None:
            if len(whole) > self.max_body:
                self.fail(f"the response body is longer than {self.max_body} bytes")
            else:
                self.body_read(whole)
            return
        self._reader = _Reader(self)
        response.deliverBody(self._reader)

    def failed(self, failure: Failure) -> None:
        status = getattr(failure.value, "status", None)
        self.fail(failure.getErrorMessage(), timed_out=status == 504)

    def body_read(self, body: bytes) -> None:
        response = self._response
        headers = Headers()
        for name, value in response.end_to_end:
            headers.addRawHeader(name, value)
        if response.length is not None:
            headers.setRawHeaders(b"content-length", [str(response.length).encode("ascii")])
        self._fire(HTTPResponse(code=int(response.code), headers=headers, body=body))


def _target(url: str) -> tuple[dict[str, Any], bytes, bytes]:
    """
    The upstream client's service record, the request target, and the
    Host header of C{url}.

    @raise ValueError: not an absolute http or https URL.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an absolute http or https URL: {url!r}")
    default = 443 if scheme == "https" else 80
    port = parts.port or default
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == default else f"{shown}:{port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    service = {"protocol": scheme, "host": host, "port": port}
    if not host_header.isascii():
        raise ValueError(f"the host of {url!r} is not ASCII: write it in its xn-- form")
    return service, target.encode("utf-8"), host_header.encode("ascii")


def _pairs(headers: Mapping[str, str] | Iterable[tuple[str, str]] | None) -> list[tuple[bytes, bytes]]:
    if headers is None:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(_bytes(name), _bytes(value)) for name, value in items]


def _bytes(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode("latin-1")


class HTTPClient:
    """
    Calls other services over HTTP/1.1 (http or https) through an
    upstream client (the node's own: L{echogate.interfaces.IUpstreamClient}),
    reading each response whole.

    @param upstream: the upstream client the calls go through.
    @param clock: the clock of the calls' timeouts.
    @param timeout: the default timeout of a call, in seconds: for all of
        it (connecting, sending, the response's head and body).
    @param max_body: the default limit on a response body, in bytes.

    @since: 0.1.0
    """

    def __init__(self, upstream: Any, clock: IReactorTime, *, timeout: float = 10.0,
                 max_body: int = MAX_BODY):
        self._upstream = upstream
        self._clock = clock
        self.timeout = timeout
        self.max_body = max_body

    def request(self, method: str, url: str, headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
                body: bytes | str | None = None, timeout: float | None = None, *, json: Any = None,
                retries: int = 0, max_body: int | None = None) -> Deferred[HTTPResponse]:
        """
        Send one request and read its response whole.

        @param method: the method, e.g. C{"GET"}.
        @param url: an absolute C{http://} or C{https://} URL.
        @param headers: request headers, a mapping or C{(name, value)}
            pairs (Host is set from C{url} unless given).
        @param body: the request body (C{str} is sent as UTF-8).
        @param timeout: seconds for the whole call (the client's default
            when C{None}).
        @param json: a value sent as a JSON body (with
            C{Content-Type: application/json} unless given), instead of
            C{body}.
        @param retries: how many times a request that failed to connect
            is tried again (idempotent methods only, as for services).
        @param max_body: the longest response body read (the client's
            default when C{None}).
        @return: a Deferred firing with an L{HTTPResponse} whatever its
            status, or failing with L{CallFailed} (no complete response,
            or the timeout ran out) or C{ValueError} (a bad URL).
            Cancelling it aborts the call.
        """
        try:
            service, target, host = _target(url)
        except ValueError as e:
            return fail(e)
        seconds = self.timeout if timeout is None else timeout
        milliseconds = max(1, int(seconds * 1000))
        service.update(connect_timeout=milliseconds, read_timeout=milliseconds, write_timeout=milliseconds,
                       retries=retries)
        pairs = _pairs(headers)
        names = {name.lower() for name, _ in pairs}
        if json is not None:
            if body is not None:
                raise TypeError("pass body or json, not both")
            body = _json.dumps(json).encode("utf-8")
            if b"content-type" not in names:
                pairs.append((b"Content-Type", b"application/json"))
        if b"host" not in names:
            pairs.insert(0, (b"Host", host))
        data = body.encode("utf-8") if isinstance(body, str) else body
        call = _Call(url, seconds, self.max_body if max_body is None else max_body, self._clock)
        call._handle = self._upstream.send(service, method.upper().encode("ascii"), target, pairs,
                                           _Bytes(data) if data is not None else None,
                                           call.arrived, call.failed)
        return call.result

    def get(self, url: str, headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
            timeout: float | None = None, **kwargs: Any) -> Deferred[HTTPResponse]:
        """
        L{request} with C{GET}.
        """
        return self.request("GET", url, headers, None, timeout, **kwargs)

    def post(self, url: str, headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
             body: bytes | str | None = None, timeout: float | None = None, **kwargs: Any) -> Deferred[HTTPResponse]:
        """
        L{request} with C{POST}.
        """
        return self.request("POST", url, headers, body, timeout, **kwargs)

