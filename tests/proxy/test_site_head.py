"""
The proxy listener reading a simple request head in one step
(L{echogate.proxy.channel.simple_head}, L{echogate.proxy.channel.GatewayChannel}), checked
against Twisted's line by line reading, over Twisted's test doubles.
"""
from __future__ import annotations

import random
import re
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from echogate.proxy.channel import GatewayChannel
from echogate.proxy.heads import checked_head, simple_head, simple_head_error
from echogate.proxy.site import GatewaySite
from tests.proxy.test_site import _Pending


class SimpleHeadTests(SynchronousTestCase):
    """
    L{simple_head} takes a whole, bodiless request head that Twisted would
    accept as it is, and declines everything else.
    """

    def test_simple(self) -> None:
        """
        The request line's parts, and each header's name and raw value.
        """
        self.assertEqual(
            simple_head(b"GET /a?b=c HTTP/1.1\r\nHost: x\r\nX-Two:  v w \t\r\nEmpty:\r\n\r\n", 16384, 500),
            (b"GET", b"/a?b=c", b"HTTP/1.1", [(b"Host", b" x"), (b"X-Two", b"  v w \t"), (b"Empty", b"")]))

    def test_noHeaders(self) -> None:
        self.assertEqual(simple_head(b"OPTIONS * HTTP/1.0\r\n\r\n", 16384, 500), (b"OPTIONS", b"*", b"HTTP/1.0", []))

    def test_declined(self) -> None:
        """
        Heads with a body, an expectation, a folded line, anything after the
        blank line, a missing blank line, or anything Twisted would reject or
        treat specially are declined.
        """
        for head in [
            b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n",
            b"POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTRANSFER-ENCODING: chunked\r\n\r\n",
            b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\r\n",
            b"\r\nGET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\nHost: x\n\n",
            b"GET / HTTP/1.1\r\nHost: x\ny\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\ry\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\x00\r\n\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / x HTTP/1.1\r\n\r\n",
            b"G@T / HTTP/1.1\r\n\r\n",
            b"GET /\x7f HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nName : x\r\n\r\n",
            b"GET / HTTP/1.1\r\n: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nno-colon\r\n\r\n",
            b"",
        ]:
            self.assertIsNone(simple_head(head, 16384, 500), head)

    def test_limits(self) -> None:
        """
        A head over the size limit, or with more header lines than allowed,
        is declined (and so left to Twisted's own limits).
        """
        head = b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 3 + b"\r\n"
        self.assertIsNotNone(simple_head(head, len(head), 3))
        self.assertIsNone(simple_head(head, len(head) - 1, 3))
        self.assertIsNone(simple_head(head, len(head), 2))


_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
#: The grammar L{simple_head} takes, as the pattern it was first written
#: with (what it replaced): the reference for L{SimpleHeadGrammarTests}.
_SIMPLE_HEAD = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) (HTTP/1\.[01])\r\n((?:" + _TOKEN
                          + rb":[^\r\n\x00]*\r\n)*)\r\n\Z")
_HEADER_LINE = re.compile(rb"([^:]+):([^\r]*)\r\n")


def _by_pattern(data: bytes, max_size: int, max_headers: int) -> tuple[bytes, bytes, bytes, list] | None:
    """
    L{simple_head} by the reference pattern.
    """
    match = _SIMPLE_HEAD.match(data)
    if len(data) > max_size or match is None:
        return None
    block = match.group(4)
    lowered = b"\r\n" + block.lower()
    if any(b"\r\n" + name + b":" in lowered for name in (b"content-length", b"transfer-encoding", b"expect")):
        return None
    headers = _HEADER_LINE.findall(block)
    if len(headers) > max_headers:
        return None
    return match.group(1), match.group(2), match.group(3), headers


class SimpleHeadGrammarTests(SynchronousTestCase):
    """
    L{simple_head} takes exactly the heads of its grammar (the pattern
    L{_SIMPLE_HEAD}), with the same parts.
    """

    HEADS = [
        b"GET /100b HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nX-Request-Echo: bench\r\n\r\n",
        b"POST /a?b=c HTTP/1.0\r\nHost: x\r\nX-Two:  v w \t\r\nEmpty:\r\nX-Bytes: \xff\x01\x7f\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\n\r\n",
        b"M-1!#$%&'*+.^_`|~ /~!$&'()*+,;=:@% HTTP/1.1\r\nExpect-Not: 1\r\nContent-Lengths: 2\r\n\r\n",
        b"TRACE / HTTP/1.1\r\nHost: [::1]:80\r\nhost: b\r\n\r\n",
    ]
    #: What mutations put in: the bytes the grammar treats specially.
    ALPHABET = [b"\r", b"\n", b"\r\n", b"\x00", b" ", b"\t", b":", b"\x7f", b"\x80", b"\x20", b"a", b"-", b"/",
                b"@", b"Content-Length: 1\r\n", b"expect:\r\n", b"TRANSFER-encoding:x\r\n", b"HTTP/1.1",
                b"HTTP/1.2", b"\r\n\r\n", b"Host: h\r\n", b"HOST:x:1\r\n", b"[", b"]", b"%"]

    def check(self, head: bytes, max_size: int = 16384, max_headers: int = 100) -> None:
        """
        L{simple_head} and L{checked_head} take C{head} as the pattern
        does, and L{checked_head}'s status is L{simple_head_error}'s.
        """
        expected = _by_pattern(head, max_size, max_headers)
        self.assertEqual(simple_head(head, max_size, max_headers), expected, head)
        checked = checked_head(head, max_size, max_headers)
        if expected is None:
            self.assertIsNone(checked, head)
        else:
            self.assertEqual(checked, (*expected, simple_head_error(expected[0], expected[2], head)), head)

    def test_mutations(self) -> None:
        """
        Heads with bytes inserted, replaced or removed anywhere are taken
        or declined as the pattern takes or declines them.
        """
        rng = random.Random(25)
        taken = 0
        for _ in range(6000):
            head = rng.choice(self.HEADS)
            for _ in range(rng.randint(1, 3)):
                at = rng.randrange(len(head) + 1)
                what = rng.choice(self.ALPHABET)
                change = rng.randrange(3)
                if change == 0:
                    head = head[:at] + what + head[at:]
                elif change == 1:
                    head = head[:at] + what + head[at + 1:]
                else:
                    head = head[:at] + head[at + rng.randint(1, 4):]
            self.check(head)
            taken += _by_pattern(head, 16384, 100) is not None
        self.assertGreater(taken, 300)  # the mutations left many heads simple

    def test_limits(self) -> None:
        """
        The size and header-count limits are the pattern's.
        """
        for head in self.HEADS:
            for size in (len(head) - 1, len(head)):
                for count in range(5):
                    self.check(head, size, count)

    def test_status(self) -> None:
        """
        L{checked_head}'s status is L{simple_head_error}'s: 400 without a
        Host in HTTP/1.1, with several, or with an invalid one; 405 for
        TRACE.
        """
        statuses = set()
        for line in (b"GET / HTTP/1.1", b"GET / HTTP/1.0", b"TRACE / HTTP/1.1", b"TRACE / HTTP/1.0"):
            for hosts in ([], [b"Host: a"], [b"host:a.b:80", b"X: y"], [b"HOST: \t[::1]:8080 \t"], [b"Host: a b"],
                          [b"Host:"], [b"Host: a:99999"], [b"Host: :80"], [b"Host: a", b"hOst: a"],
                          [b"X-Host: a"], [b"Hosts: a"]):
                head = line + b"\r\n" + b"".join(h + b"\r\n" for h in hosts) + b"\r\n"
                self.check(head)
                statuses.add(checked_head(head, 16384, 100)[4])  # type: ignore[index]
        self.assertEqual(statuses, {None, 400, 405})

    def test_headerNames(self) -> None:
        """
        A name is remembered as sent: the same name in another case is
        checked on its own, and a name seen declined stays declined.
        """
        for name in (b"Expect", b"EXPECT", b"Content-length", b"X\x80", b"X-Ok", b"x-ok"):
            for _ in range(2):
                self.check(b"GET / HTTP/1.1\r\n" + name + b": v\r\n\r\n")
                self.check(b"GET / HTTP/1.1\r\nHost: a\r\n" + name + b":\r\n\r\n")


class _Recorder(Resource):
    """
    Answers every request at once with what the request was made of.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple] = []

    def render(self, request: Any) -> bytes:
        self.seen.append((request.method, request.uri, request.path, request.clientproto, request.args,
                          sorted(request.requestHeaders.getAllRawHeaders()), request.received_cookies,
                          request.content.read(), request.channel.persistent))
        return b"ok"


class _LineByLine(GatewayChannel):
    """
    The channel reading every head line by line (Twisted's reading, with
    the channel's edge checks): the reference.
    """

    def connectionMade(self) -> None:
        super().connectionMade()
        self._fast_size = -1


def _without_date(data: bytes) -> bytes:
    return b"\r\n".join(line for line in data.split(b"\r\n") if not line.lower().startswith(b"date:"))


class HeadFastPathTests(SynchronousTestCase):
    """
    L{GatewayChannel} takes a simple request head in one step; the
    requests it makes, and what the client gets, are what Twisted's line by
    line reading gives.
    """

    def connect(self, channel_class: type, resource: Resource) -> tuple[Any, StringTransport]:
        site = GatewaySite(resource, reactor=Clock())
        site.protocol = channel_class
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
        transport = StringTransport()
        channel.makeConnection(transport)
        return channel, transport

    def both(self, *chunks: bytes) -> tuple[list, bytes]:
        """
        Feed C{chunks} to a L{GatewayChannel} and to the reference, assert
        that both made the same requests and wrote the same bytes, and
        return those.
        """
        results = []
        for channel_class in (GatewayChannel, _LineByLine):
            recorder = _Recorder()
            channel, transport = self.connect(channel_class, recorder)
            for chunk in chunks:
                channel.dataReceived(chunk)
            results.append((recorder.seen, _without_date(transport.value()), transport.disconnecting))
        self.assertEqual(results[0], results[1], chunks)
        return results[0][0], results[0][1]

    SIMPLE = [
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /p/q?x=1&y=2&x=3 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n",
        b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n",
        b"DELETE /d HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nCookie: a=b; c=d\r\nCookie: e=f\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Spaces: \t v  w \t \r\nx-lower: 1\r\nX-LOWER: 2\r\nEmpty:\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Bytes: \xff\xfe\x01\r\nwww-authenticate: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"H%d: %d\r\n" % (i, i) for i in range(99)) + b"\r\n",
    ]

    def test_simpleHeadsInOneStep(self) -> None:
        """
        Simple heads are not read line by line, and make the same requests
        and answers as Twisted's reading.
        """
        for head in self.SIMPLE:
            recorder = _Recorder()
            channel, _ = self.connect(GatewayChannel, recorder)
            channel.lineReceived = lambda line, head=head: self.fail(f"read line by line: {head!r}")
            channel.dataReceived(head)
            self.assertEqual(len(recorder.seen), 1, head)
            seen, _ = self.both(head)
            self.assertEqual(len(seen), 1)

    def test_sameAsTwisted(self) -> None:
        """
        Whatever arrives, and however it is split, the requests made and the
        bytes written are those of Twisted's line by line reading.
        """
        cases: list[tuple[bytes, ...]] = [(head,) for head in self.SIMPLE]
        cases += [
            (b"POST /f HTTP/1.1\r\nContent-Length: 3\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\na=b",),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",),
            (b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n", b"ok"),
            (b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",),
            (b"GET / HTTP/1.1\r\nX: a\r\n  b\r\n\r\n",),
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",),
            (b"GET / HTTP/1.1\r\nHo", b"st: a\r\n\r\n", b"GET /2 HTTP/1.1\r\n\r\n"),
            (b"GET / HTTP/1.1\r\nHost: a\r\n", b"\r\n", b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n"),
            (b"\r\nGET / HTTP/1.1\r\n\r\n", b"GET /2 HTTP/1.1\r\n\r\n"),
            # a whole head's look-alike completing a partial line, or inside
            # a head being read
            (b"X", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            (b"GET / HTTP/1.1\r\n", b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"),
            (b"GET / HTTP/1.0\r\n\r\n", b"GET /2 HTTP/1.1\r\n\r\n"),
            (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", b"GET /2 HTTP/1.1\r\n\r\n"),
            (b"GET / HTTP/1.1\nHost: a\n\n",),
            (b"GET / HTTP/2.0\r\n\r\n",),
            (b"G@T / HTTP/1.1\r\n\r\n",),
            (b"GET /\x7f\x80 HTTP/1.1\r\n\r\n",),
            (b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",),
            (b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",),
            (b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",),
            (b"GET / HTTP/1.1\r\n" + b"H: v\r\n" * 501 + b"\r\n",),
            (b"GET / HTTP/1.1\r\nX: " + b"v" * 16400 + b"\r\n\r\n",),
            (b"GET / HTTP/1.1\r\n" + b"X: " + b"v" * 8000 + b"\r\n" + b"Y: " + b"v" * 8000 + b"\r\n\r\n",),
        ]
        for chunks in cases:
            self.both(*chunks)

    def test_whileHandlingBuffered(self) -> None:
        """
        A head that arrives while a request is in hand waits, as Twisted
        makes it wait, and is taken when that request is finished.
        """
        resource = _Pending()
        channel, transport = self.connect(GatewayChannel, resource)
        channel.dataReceived(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n")
        channel.dataReceived(b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual([r.uri for r in resource.requests], [b"/1"])
        resource.requests[0].finish()
        self.assertEqual([r.uri for r in resource.requests], [b"/1", b"/2"])
        resource.requests[1].finish()
        self.assertEqual(transport.value().count(b"HTTP/1.1 200 OK"), 2)

    def test_timeoutMoved(self) -> None:
        """
        A request taken in one step moves the idle timer, as any request
        does.
        """
        clock = Clock()
        site = GatewaySite(_Recorder(), reactor=clock, timeout=10)
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
        transport = StringTransport()
        channel.makeConnection(transport)
        clock.advance(9)
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        clock.advance(9)
        self.assertFalse(transport.disconnecting)
        clock.advance(1)
        self.assertTrue(transport.disconnecting)
