"""
The request body's reading, held and paused (L{HoldingChannel}, a base
of L{echogate.proxy.channel.GatewayChannel}): a request with a body is
routed and authorised on its head before the body is read
(L{HoldingChannel.hold_body}, L{HoldingChannel.release_body}), a streamed
body stops being read while the service takes no more
(L{HoldingChannel.pause_body}), and a request answered before its body
was all read closes the connection (L{HoldingChannel.close_after_response}).
"""
from __future__ import annotations

from twisted.web import http

from echogate.proxy.clienttimers import TimedChannel

#: A chunk size beyond this (nginx's off_t) is refused: 17 hex digits.
_MAX_CHUNK = 2**63 - 1


class HoldingChannel(TimedChannel):
    """
    The proxy connection's reading of request bodies: held while the head
    is routed and authorised, paused while a streamed body waits for the
    service, and a chunk size beyond 63 bits refused (400).
    """

    #: The idle timeout put aside while the body is held.
    _held_timeout: float | None = None

    def hold_body(self) -> None:
        """
        Stop reading the request body until L{release_body} (the head is
        being routed and authorised).
        """
        if not self._held:
            self._held = True
            self._body_done()
            # Nor the idle timer: the client waits on us (for 100 Continue).
            self._held_timeout = self.setTimeout(None)
            self._networkProducer.pauseProducing()

    def release_body(self, expects_continue: bool, read: bool = True) -> None:
        """
        Read the request body (sending C{100 Continue} first if the client
        waits for it); with C{read} false, the body is all here already and
        the request goes on as C{HTTPChannel} handles a whole one.
        """
        if self._refused:
            return
        held_timeout, self._held_timeout = self._held_timeout, None
        if not read:
            # HTTPChannel has taken the request in hand with the idle timer
            # off (as it was while held): it restores this one after it.
            self._held = False
            self._savedTimeOut = held_timeout
            return
        if expects_continue:
            self._send100Continue()
        if self._held:
            self._held = False
            self.setTimeout(held_timeout)
            self._body_read()
            self._networkProducer.resumeProducing()

    def pause_body(self) -> None:
        """
        Stop reading a streamed request body until L{resume_body}: the
        service takes no more for now. The body timer stops meanwhile (the
        service, not the client, is the slow one), and the idle timer
        waits (see L{_idle_expired}).
        """
        if not self._upload_paused and not self._refused:
            self._upload_paused = True
            self._body_done()
            self._networkProducer.pauseProducing()

    def resume_body(self) -> None:
        """
        Read a streamed request body again (after L{pause_body}).
        """
        if not self._upload_paused:
            return
        self._upload_paused = False
        if self._refused:
            return
        if not self._handlingRequest:
            self._body_read()
        self._networkProducer.resumeProducing()

    def rawDataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        reading_body = not self._handlingRequest
        if reading_body and not self._held:
            # (Not while the head is being routed and authorised: then the
            # gateway, not the client, is the one taking its time.)
            self._body_read()
        super().rawDataReceived(data)
        decoder = self._transferDecoder
        if reading_body and decoder is not None and getattr(decoder, "length", 0) > _MAX_CHUNK:
            # Twisted's chunked decoder takes any number of hex digits and
            # would wait for that many bytes.
            self.refuse(400)

    def close_after_response(self) -> None:
        """
        The request in hand is answered before its body was all read: read
        nothing more, and close the connection once the answer is written.
        """
        self.persistent = False
        self._refused = True
        self._cancel_timers()
        self._held = False

    def _finishRequestBody(self, data: bytes) -> None:
        # The body's end (HTTPChannel's decoders call this; bodiless
        # requests go straight to allContentReceived, untouched, which
        # keeps them cheap).
        self._body_done()
        request = self.requests[-1] if self.requests else None
        if request is None or request.finished or self._refused:
            # Answered (and closing) before its body was all read.
            return
        http.HTTPChannel._finishRequestBody(self, data)
