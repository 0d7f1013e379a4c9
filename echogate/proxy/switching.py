"""
The proxy connection after a 101 (L{SwitchingChannel}, a base of
L{echogate.proxy.channel.GatewayChannel}): it stops reading HTTP and its
bytes go to a L{TunnelReceiver} (L{echogate.proxy.tunnel}).
"""
from __future__ import annotations

import typing

from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure

from echogate.proxy.clienttimers import TimedChannel


class TunnelReceiver(typing.Protocol):
    """
    What takes a connection's bytes after a 101
    (L{echogate.proxy.tunnel.Tunnel} provides it).
    """

    def client_data(self, data: bytes) -> None:
        """Bytes from the client."""

    def client_lost(self, reason: Failure) -> None:
        """The client's connection closed."""

    def close(self) -> None:
        """Close both sides."""


class SwitchingChannel(TimedChannel):
    """
    A connection that can become a tunnel (L{switch_to_tunnel}).
    """

    #: What the connection's bytes go to after a 101 (L{switch_to_tunnel}).
    _tunnel: TunnelReceiver | None = None

    def switch_to_tunnel(self, receiver: TunnelReceiver, other_side: IPushProducer) -> bytes:
        """
        Stop reading HTTP: the request in hand is over for the channel,
        every byte read from now on goes to C{receiver.client_data} and the
        close to C{receiver.client_lost}; C{other_side} is paused while the
        client does not read what is written to it (and the client is
        closed after C{send_timeout} of that, as for any response).

        @return: the bytes the client sent after the request's head,
            already read (and held while the request was handled).
        """
        self._tunnel = receiver
        self._cancel_timers()
        self.persistent = False
        self.requests = []
        data = self._buffer + b"".join(self._dataBuffer)
        self._buffer = b""
        self._dataBuffer = []
        self.dataReceived = receiver.client_data  # type: ignore[method-assign]
        self.registerProducer(other_side, True)
        # (HTTPChannel stops reading while a request is handled and more
        # than a little was read after it)
        self._networkProducer.resumeProducing()
        return data

    def close_tunnel(self) -> None:
        """
        Close the tunnel this connection became, if it did, and its other
        side (the node stops).
        """
        tunnel = self._tunnel
        if tunnel is not None:
            tunnel.close()
