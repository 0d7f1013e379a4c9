"""
The proxy connection's protection against slow clients (L{TimedChannel},
a base of L{echogate.proxy.channel.GatewayChannel}): a head must arrive
within C{header_timeout} of its first byte, a body must not stall for
C{body_timeout}, a client that reads nothing for C{send_timeout} is cut,
and the idle timeout is one timer for the connection's life.
"""
from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import ITCPTransport
from twisted.logger import Logger
from twisted.web import http

from echogate.proxy.heads import DEFAULT_LIMITS, HeadLimits, error_response

_log = Logger(namespace="echogate.proxy")


class TimedChannel(http.HTTPChannel):
    """
    Twisted's C{HTTPChannel} with the timers of the site's L{HeadLimits}
    (C{header_timeout}, C{body_timeout}, C{send_timeout}: 408, or the
    connection cut) and one idle timer per connection (L{setTimeout}), and
    L{refuse}, which answers an error and closes.
    """

    #: The client's connection: TCP, or TLS over it, maybe batched.
    transport: ITCPTransport
    #: The idle timeout in seconds (C{TimeoutMixin} declares an C{int},
    #: but any number of seconds works, as for C{callLater}).
    timeOut: float | None  # type: ignore[assignment]
    _idle_call: Any = None
    _limits: HeadLimits = DEFAULT_LIMITS
    _head_call: Any = None
    _body_call: Any = None
    _send_call: Any = None
    #: Whether the request body's reading waits for its head to pass
    #: (L{echogate.proxy.holding.HoldingChannel.hold_body}).
    _held = False
    #: Whether a streamed body's reading is paused
    #: (L{echogate.proxy.holding.HoldingChannel.pause_body}).
    _upload_paused = False
    _refused = False

    def refuse(self, status: int, message: str | None = None) -> None:
        """
        Answer C{status} with a JSON error and close the connection, reading
        nothing more from it.
        """
        if self._refused:
            return
        self._refused = True
        self._cancel_timers()
        self.persistent = False
        self.transport.write(error_response(status, message))
        self.loseConnection()

    def _cancel_timers(self) -> None:
        for name in ("_head_call", "_body_call", "_send_call"):
            call = getattr(self, name)
            if call is not None:
                setattr(self, name, None)
                if call.active():
                    call.cancel()

    def _head_started(self) -> None:
        if self._head_call is None:
            self._head_call = self.callLater(self._limits.header_timeout, self._head_expired)

    def _head_expired(self) -> None:
        self._head_call = None
        self.refuse(408)

    def _body_read(self) -> None:
        call = self._body_call
        if call is not None:
            call.reset(self._limits.body_timeout)
        else:
            self._body_call = self.callLater(self._limits.body_timeout, self._body_expired)

    def _body_done(self) -> None:
        call, self._body_call = self._body_call, None
        if call is not None and call.active():
            call.cancel()

    def _body_expired(self) -> None:
        self._body_call = None
        request = self.requests[-1] if self.requests else None
        answer = getattr(request, "answer_early", None)
        if answer is not None and request is not None and not request.startedWriting:
            answer(408)
        else:
            self.refuse(408)

    def pauseProducing(self) -> None:
        # The client stopped reading what we send: it has send_timeout to
        # start again.
        super().pauseProducing()
        if self._send_call is None and not self._refused:
            self._send_call = self.callLater(self._limits.send_timeout, self._send_expired)

    def resumeProducing(self) -> None:
        call, self._send_call = self._send_call, None
        if call is not None and call.active():
            call.cancel()
        super().resumeProducing()
        if self._held or self._upload_paused:
            self._networkProducer.pauseProducing()

    def _send_expired(self) -> None:
        self._send_call = None
        _log.info("closing a client that read nothing for {timeout} s", timeout=self._limits.send_timeout)
        self._cancel_timers()
        self.transport.abortConnection()

    def setTimeout(self, period: float | None) -> float | None:
        """
        C{TimeoutMixin}'s, with one timer per connection: Twisted turns the
        idle timeout off while each request is handled and on again after
        it, which would cancel a timer and make a new one for every
        request. Here turning it off leaves the timer set (it does nothing
        if it fires while the timeout is off), and turning it on moves it
        with C{reset}.
        """
        previous, self.timeOut = self.timeOut, period
        if period is not None:
            call = self._idle_call
            if call is not None:
                call.reset(period)
            else:
                self._idle_call = self.callLater(period, self._idle_expired)
        return previous

    def resetTimeout(self) -> None:
        call = self._idle_call
        if call is not None and self.timeOut is not None:
            call.reset(self.timeOut)

    def _idle_expired(self) -> None:
        self._idle_call = None
        if self._upload_paused and self.timeOut is not None:
            # Not idle: a streamed body waits for the service.
            self._idle_call = self.callLater(self.timeOut, self._idle_expired)
            return
        if self.timeOut is not None:
            self.timeoutConnection()
