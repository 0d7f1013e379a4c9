"""
A tiny RFC 6455 WebSocket server and client for the tests, on Twisted: the
handshake, and frames (the client's masked, the server's not). No
fragmentation, no extensions.

Server paths:
  - C{/deny...}: answers the handshake 403 with a small body;
  - C{/flood...}: after the 101, sends binary frames of 64 KiB without end,
    honouring back-pressure (counts its pauses);
  - anything else: echoes every text or binary message, answers pings,
    and answers a close with a close.
"""
from __future__ import annotations

import base64
import hashlib
import os
import struct
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory, Factory, Protocol

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def frame(opcode: int, payload: bytes, mask: bool) -> bytes:
    """
    One final frame of C{opcode} carrying C{payload}, masked when C{mask}.
    """
    head = bytes([0x80 | opcode])
    bit = 0x80 if mask else 0
    size = len(payload)
    if size < 126:
        head += bytes([bit | size])
    elif size < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", size)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + _unmask(key, payload)


def _unmask(key: bytes, payload: bytes) -> bytes:
    repeated = (key * (len(payload) // 4 + 1))[:len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(payload), "big")


class Frames:
    """
    Cuts a byte stream into C{(opcode, payload)} frames.
    """

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buffer += data
        out = []
        while True:
            buf = self._buffer
            if len(buf) < 2:
                return out
            opcode, size, offset = buf[0] & 0x0F, buf[1] & 0x7F, 2
            masked = buf[1] & 0x80
            if size == 126:
                if len(buf) < 4:
                    return out
                size, offset = struct.unpack("!H", buf[2:4])[0], 4
            elif size == 127:
                if len(buf) < 10:
                    return out
                size, offset = struct.unpack("!Q", buf[2:10])[0], 10
            key = b""
            if masked:
                key, offset = buf[offset:offset + 4], offset + 4
            if len(buf) < offset + size:
                return out
            payload = buf[offset:offset + size]
            self._buffer = buf[offset + size:]
            out.append((opcode, _unmask(key, payload) if masked else payload))


class WebSocketServer(Protocol):
    def __init__(self, factory: "ServerFactory"):
        self.factory = factory
        self._head = b""
        self._frames = Frames()
        self._open = False
        self._paused = False
        self.closed: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.factory.connections.append(self)

    def dataReceived(self, data: bytes) -> None:
        if self._open:
            self._messages(data)
            return
        self._head += data
        if b"\r\n\r\n" not in self._head:
            return
        head, rest = self._head.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        path = lines[0].split(b" ")[1]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        self.factory.handshakes.append((path, headers))
        if path.startswith(b"/deny"):
            self.transport.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\nX-Why: policy\r\n\r\ndenied")
            self.transport.loseConnection()
            return
        self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                             b"Sec-WebSocket-Accept: " + accept_key(headers.get(b"sec-websocket-key", b"")) +
                             b"\r\nX-Server: ws\r\n\r\n")
        self._open = True
        if path.startswith(b"/flood"):
            self.transport.registerProducer(self, True)
            self.resumeProducing()
            return
        if rest:
            self._messages(rest)

    def pauseProducing(self) -> None:
        self._paused = True
        self.factory.pauses += 1

    def resumeProducing(self) -> None:
        self._paused = False
        chunk = frame(2, b"x" * 65536, False)
        while not self._paused and self.transport.connected and not self.transport.disconnecting:
            self.factory.sent += len(chunk)
            self.transport.write(chunk)

    def stopProducing(self) -> None:
        self._paused = True

    def _messages(self, data: bytes) -> None:
        for opcode, payload in self._frames.feed(data):
            if opcode in (1, 2):
                self.transport.write(frame(opcode, payload, False))
            elif opcode == 9:
                self.transport.write(frame(10, payload, False))
            elif opcode == 8:
                self.transport.write(frame(8, payload, False))
                self.transport.loseConnection()

    def connectionLost(self, reason: Any) -> None:
        self.factory.connections.remove(self)
        self.factory.lost += 1
        self.closed.callback(None)


class ServerFactory(Factory):
    noisy = False

    def __init__(self) -> None:
        self.connections: list[WebSocketServer] = []
        self.handshakes: list[tuple[bytes, dict[bytes, bytes]]] = []
        self.pauses = 0
        self.sent = 0
        self.lost = 0

    def buildProtocol(self, addr: Any) -> WebSocketServer:
        return WebSocketServer(self)


def start_ws_server(testcase: Any) -> tuple[ServerFactory, int]:
    factory = ServerFactory()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    testcase.addCleanup(port.stopListening)

    def drop() -> None:
        for conn in list(factory.connections):
            conn.transport.abortConnection()

    testcase.addCleanup(drop)
    return factory, port.getHost().port


class WebSocketClient(Protocol):
    """
    A handshake, then frames; C{head} fires with the answer's head (and
    body, for an answer other than 101), C{messages} collects what came.
    """

    def __init__(self, path: bytes, headers: bytes = b"", read: bool = True):
        self._request = (b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                         b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" + headers +
                         b"\r\n")
        self._buffer = b""
        self._frames = Frames()
        self.head: Deferred[bytes] = Deferred()
        self.status = 0
        self.messages: list[tuple[int, bytes]] = []
        self.received = 0
        self.closed: Deferred[None] = Deferred()
        self.is_closed = False
        self._read = read

    def connectionMade(self) -> None:
        self.transport.write(self._request)
        if not self._read:
            self.transport.pauseProducing()

    def send(self, opcode: int, payload: bytes) -> None:
        self.transport.write(frame(opcode, payload, True))

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        if self.head.called:
            self.messages.extend(self._frames.feed(data))
            return
        self._buffer += data
        if b"\r\n\r\n" in self._buffer:
            head, rest = self._buffer.split(b"\r\n\r\n", 1)
            self.status = int(head.split(b" ")[1])
            if self.status != 101:
                return  # (the body: read until the close)
            self.head.callback(head)
            self.messages.extend(self._frames.feed(rest))

    def connectionLost(self, reason: Any) -> None:
        self.is_closed = True
        if not self.head.called:
            self.head.callback(self._buffer)
        self.closed.callback(None)


def connect_client(port: int, client: WebSocketClient) -> WebSocketClient:
    reactor.connectTCP("127.0.0.1", port, ClientFactory.forProtocol(lambda: client))
    return client
