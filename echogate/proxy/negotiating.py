"""
Choosing between HTTP/1.1 and HTTP/2 on a proxy listener that offers both
(the C{http2} flag of C{proxy_listen}): L{HTTP2Listener} wraps the site
for that listener. On a TLS listener the choice is ALPN's (the client
asked for C{h2}, see L{echogate.proxy.tls}); on a plain one, a client
whose first bytes are HTTP/2's preface speaks HTTP/2 with prior knowledge
(h2c), any other speaks HTTP/1.1.

The choice is made once, on the connection's first read, by a stand-in
for the channel's C{dataReceived}; after it the connection's reads go
straight to the chosen protocol (an HTTP/1.1 channel's own method, or the
L{echogate.proxy.h2.GatewayH2Connection} now registered with the
transport), so that listeners without the flag, and the HTTP/1.1
connections of those with it, pay nothing for it.
"""
from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory, Protocol

from echogate.proxy.channel import GatewayChannel

__all__ = ["HTTP2Listener", "PREFACE"]

#: What an HTTP/2 client sends first (RFC 9113 section 3.4).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class HTTP2Listener(Factory):
    """
    The site of one proxy listener that offers HTTP/2 as well as
    HTTP/1.1: its channels choose on their first read.

    @param site: the proxy's L{echogate.proxy.site.GatewaySite}.
    @param tls: whether the listener is a TLS one (ALPN decides), else h2c
        by prior knowledge.
    @param max_streams: each HTTP/2 connection's concurrent streams.
    """

    def __init__(self, site: Any, tls: bool, max_streams: int = 128):
        self.site = site
        self.tls = tls
        self.max_streams = max_streams

    def doStart(self) -> None:
        self.site.doStart()

    def doStop(self) -> None:
        self.site.doStop()

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:
        channel = self.site.buildProtocol(addr)
        if channel is not None:
            channel.dataReceived = _FirstRead(channel, self.tls, self.max_streams)
        return channel  # type: ignore[no-any-return]


class _FirstRead:
    """
    A channel's C{dataReceived} until the protocol is chosen.
    """

    __slots__ = ("_channel", "_tls", "_max_streams", "_early")

    def __init__(self, channel: GatewayChannel, tls: bool, max_streams: int):
        self._channel = channel
        self._tls = tls
        self._max_streams = max_streams
        self._early = b""

    def __call__(self, data: bytes) -> None:
        channel = self._channel
        if self._early:
            data, self._early = self._early + data, b""
        if self._tls:
            h2 = getattr(channel.transport, "negotiatedProtocol", None) == b"h2"
        else:
            if len(data) < len(PREFACE) and PREFACE.startswith(data):
                self._early = data  # maybe a preface: wait for the rest
                return
            h2 = data.startswith(PREFACE)
        del channel.dataReceived  # the class's own, from now on
        if h2:
            _become_h2(channel, data, self._max_streams)
        else:
            channel.dataReceived(data)


def _become_h2(channel: GatewayChannel, data: bytes, max_streams: int) -> None:
    """
    Hand C{channel}'s connection to a new HTTP/2 connection, which takes
    C{data} (the preface and what followed) and every read after it.
    """
    from echogate.proxy.h2 import GatewayH2Connection

    site = channel.site
    channel._cancel_timers()
    idle = channel._idle_call
    channel._idle_call = None
    if idle is not None and idle.active():
        idle.cancel()
    channel.timeOut = None
    producer: Any = channel._networkProducer
    producer.unregisterProducer()
    closed = getattr(site, "channel_closed", None)
    if closed is not None:
        closed(channel)
    transport = channel.transport
    connection = GatewayH2Connection(site, max_streams=max_streams)
    raw: Any = getattr(transport, "_transport", transport)  # (under a BatchedTransport)
    if hasattr(raw, "wrappedProtocol"):
        raw.wrappedProtocol = connection  # TLS: the TLS protocol reads for it
    else:
        raw.protocol = connection  # TCP: the reactor reads for it
    connection.makeConnection(transport)
    producer.registerProducer(connection, True)
    connection.dataReceived(data)
