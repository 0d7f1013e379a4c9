"""
Unit tests of the lean upstream client: parsing responses (head, headers,
bodies of each framing, interim and HEAD responses), with httptools and
with echogate's own parser.
"""
from __future__ import annotations

import gc
import platform
import weakref
from typing import Any
from unittest import SkipTest

from twisted.internet import error as ierror
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import PotentialDataLoss, ResponseDone
from twisted.web.iweb import UNKNOWN_LENGTH

from tests.upstream.test_lean import Collector, Harness, _PureParser, answered, lose


class ParsingTests(SynchronousTestCase):
    def body_of(self, response: Any) -> Collector:
        c = Collector()
        response.deliverBody(c)
        return c

    def test_contentLength(self) -> None:
        """
        A Content-Length body: code, phrase, headers (without connection
        control ones), length, the body and ResponseDone.
        """
        h, d, p, t = answered(b"HTTP/1.1 201 Made\r\nContent-Length: 3\r\nX-A: b\r\nConnection: keep-alive\r\n\r\nabc")
        r = self.successResultOf(d)
        self.assertEqual((r.code, r.phrase, r.length, r.version), (201, b"Made", 3, (b"HTTP", 1, 1)))
        self.assertEqual(r.headers.getRawHeaders(b"x-a"), [b"b"])
        self.assertFalse(r.headers.hasHeader(b"content-length"))
        self.assertFalse(r.headers.hasHeader(b"connection"))
        c = self.body_of(r)
        self.assertEqual(b"".join(c.chunks), b"abc")
        self.assertTrue(c.reason.check(ResponseDone))

    def test_wholeAnswerInOneRead(self) -> None:
        """
        The response is handed over once the read that brought its head is
        parsed: an answer that came whole is complete when the caller gets
        it (body and end at once, the connection already back in the pool),
        so the caller need not wait, or time, the rest.
        """
        h = Harness()
        d = h.request()
        p, t = h.connect()
        seen: list[Any] = []

        def got(response: Any) -> None:
            c = self.body_of(response)
            seen.append((b"".join(c.chunks), c.reason, h.client.idle_count("127.0.0.1", 8080)))

        d.addCallback(got)
        p.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        [(body, reason, idle)] = seen
        self.assertEqual(body, b"ok")
        self.assertTrue(reason.check(ResponseDone))
        self.assertEqual(idle, 1)

    def test_endToEndHeaders(self) -> None:
        """
        C{headers} holds only end-to-end headers: hop-by-hop ones and the
        names the Connection header lists are left out; C{raw_headers}
        keeps every line as sent, in order.
        """
        head = (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: x-private, Keep-Alive\r\n"
                b"X-Private: s\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nTrailer: x-t\r\n"
                b"X-Public: p\r\nX-Public: q\r\n\r\n")
        h, d, p, t = answered(head)
        r = self.successResultOf(d)
        self.assertEqual(list(r.headers.getAllRawHeaders()), [(b"X-Public", [b"p", b"q"])])
        self.assertEqual([name for name, _ in r.raw_headers],
                         [b"Content-Length", b"Connection", b"X-Private", b"Keep-Alive", b"Proxy-Authenticate",
                          b"Trailer", b"X-Public", b"X-Public"])
        self.assertEqual(r.end_to_end, [(b"X-Public", b"p"), (b"X-Public", b"q")])
        self.assertFalse(r.via)

    def test_wholeBody(self) -> None:
        """
        A body that all came (and ended) before anything was asked of it is
        taken whole, once; the response then refuses C{deliverBody}.
        """
        h, d, p, t = answered(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        response = self.successResultOf(d)
        self.assertEqual(response.whole_body(), b"hello")
        self.assertIsNone(response.whole_body())
        self.assertRaises(RuntimeError, response.deliverBody, Collector())
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 1)

    def test_wholeBodyEmpty(self) -> None:
        """
        An answer without a body (here to HEAD) has an empty whole body.
        """
        h, d, p, t = answered(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", method=b"HEAD")
        self.assertEqual(self.successResultOf(d).whole_body(), b"")

    def test_noWholeBody(self) -> None:
        """
        No whole body while part of it is still to come (it is then
        delivered as usual), when the body ends with the connection, or
        after C{deliverBody}.
        """
        h, d, p, t = answered(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nab")
        response = self.successResultOf(d)
        self.assertIsNone(response.whole_body())
        c = self.body_of(response)
        p.dataReceived(b"cdef")
        self.assertEqual(b"".join(c.chunks), b"abcdef")
        self.assertTrue(c.reason.check(ResponseDone))

        h, d, p, t = answered(b"HTTP/1.1 200 OK\r\n\r\nuntil close")
        response = self.successResultOf(d)
        p.connectionLost(Failure(ierror.ConnectionDone()))
        self.assertIsNone(response.whole_body())

        h, d, p, t = answered(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        response = self.successResultOf(d)
        self.body_of(response)
        self.assertIsNone(response.whole_body())

    def test_noCycleWithTheBodyProtocol(self) -> None:
        """
        Once its body was delivered, a response no longer refers to the
        body's protocol (which holds the response as its transport), so
        reference counting frees both, and the request they reach, without
        the cyclic garbage collector: whether the body was all there when
        C{deliverBody} was called or came after.
        """
        if platform.python_implementation() != "CPython":
            raise SkipTest("reference counting frees the objects at once on CPython only")
        for parts in ([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"],
                      [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", b"ok"]):
            h, d, p, t = answered(parts[0])
            response = self.successResultOf(d)
            collector = self.body_of(response)
            for part in parts[1:]:
                p.dataReceived(part)
            self.assertTrue(collector.reason.check(ResponseDone), f"row parts={parts!r}")
            gone = weakref.ref(collector)
            gc.disable()
            try:
                del collector, response, d
                self.assertIsNone(gone(), parts)
            finally:
                gc.enable()

    def test_endToEndPairs(self) -> None:
        """
        C{end_to_end} holds the end-to-end lines as sent (names as written,
        in order); C{via} says whether a Via header is among them, unless
        the Connection header lists it.
        """
        h, d, p, t = answered(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nx-lower: 1\r\nVia: 1.0 cache\r\n"
                              b"X-Upper: 2\r\n\r\n")
        r = self.successResultOf(d)
        self.assertEqual(r.end_to_end, [(b"x-lower", b"1"), (b"Via", b"1.0 cache"), (b"X-Upper", b"2")])
        self.assertTrue(r.via)
        h, d, p, t = answered(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: via\r\nVia: 1.0 cache\r\n\r\n")
        r = self.successResultOf(d)
        self.assertEqual(r.end_to_end, [])
        self.assertFalse(r.via)

    def test_bodyInParts(self) -> None:
        """
        Body bytes arriving after deliverBody are passed on as they come.
        """
        h, d, p, t = answered(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nab")
        c = self.body_of(self.successResultOf(d))
        self.assertEqual(c.chunks, [b"ab"])
        self.assertIsNone(c.reason)
        p.dataReceived(b"cdef")
        self.assertEqual(c.chunks, [b"ab", b"cdef"])
        self.assertTrue(c.reason.check(ResponseDone))

    def test_headInParts(self) -> None:
        """
        A head split over several reads is parsed once complete.
        """
        h = Harness()
        d = h.request()
        p, t = h.connect()
        p.dataReceived(b"HTTP/1.1 200 OK\r\nX-Lo")
        self.assertNoResult(d)
        p.dataReceived(b"ng: yes\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(self.successResultOf(d).headers.getRawHeaders(b"x-long"), [b"yes"])

    def test_chunked(self) -> None:
        """
        A chunked body is decoded; its length is unknown.
        """
        h, d, p, t = answered(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        r = self.successResultOf(d)
        self.assertIs(r.length, UNKNOWN_LENGTH)
        c = self.body_of(r)
        self.assertEqual(b"".join(c.chunks), b"abcde")
        self.assertTrue(c.reason.check(ResponseDone))

    def test_closeDelimited(self) -> None:
        """
        A body without length ends with the connection: PotentialDataLoss,
        and the connection is not kept.
        """
        h, d, p, t = answered(b"HTTP/1.1 200 OK\r\n\r\nsome")
        r = self.successResultOf(d)
        c = self.body_of(r)
        p.dataReceived(b" more")
        lose(p, t)
        self.assertEqual(b"".join(c.chunks), b"some more")
        self.assertTrue(c.reason.check(PotentialDataLoss))
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 0)

    def test_headResponse(self) -> None:
        """
        A response to HEAD has no body, whatever its Content-Length says,
        and its connection is reused.
        """
        h, d, p, t = answered(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n", method=b"HEAD")
        r = self.successResultOf(d)
        c = self.body_of(r)
        self.assertEqual(c.chunks, [])
        self.assertTrue(c.reason.check(ResponseDone))
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 1)

    def test_headResponseWithBytesAfter(self) -> None:
        """
        Bytes after a HEAD response's head make its connection unusable.
        """
        h, d, p, t = answered(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", method=b"HEAD")
        self.assertTrue(self.body_of(self.successResultOf(d)).reason.check(ResponseDone))
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 0)
        self.assertTrue(t.disconnecting)

    def test_noBodyCodes(self) -> None:
        """
        204 and 304 responses have no body.
        """
        for code in (b"204 No Content", b"304 Not Modified"):
            h, d, p, t = answered(b"HTTP/1.1 " + code + b"\r\nContent-Length: 10\r\n\r\n")
            r = self.successResultOf(d)
            self.assertEqual(r.length, 0, f"row code={code!r}")
            self.assertTrue(self.body_of(r).reason.check(ResponseDone), f"row code={code!r}")
            self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 1, f"row code={code!r}")

    def test_interimSkipped(self) -> None:
        """
        1xx responses are skipped; the final response is the result.
        """
        h, d, p, t = answered(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early\r\nLink: x\r\n\r\n"
                              b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        r = self.successResultOf(d)
        self.assertEqual(r.code, 200)
        self.assertFalse(r.headers.hasHeader(b"link"))
        self.assertEqual(self.body_of(r).chunks, [b"ok"])

    def test_http10(self) -> None:
        """
        An HTTP/1.0 response's connection is closed after it.
        """
        h, d, p, t = answered(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
        r = self.successResultOf(d)
        self.assertEqual(r.version, (b"HTTP", 1, 0))
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 0)
        self.assertTrue(t.disconnecting)

    def test_responsesInTurn(self) -> None:
        """
        The responses read one after the other on a kept-alive connection
        are each parsed on their own: status, version, headers, framing
        and body (HTTP/1.0 kept alive, chunked, then Content-Length).
        """
        h = Harness()
        answers = [
            (b"HTTP/1.0 201 Made\r\nConnection: keep-alive\r\nX-A: 1\r\nContent-Length: 3\r\n\r\none",
             (201, b"Made", (b"HTTP", 1, 0), [(b"X-A", b"1")], 3, b"one")),
            (b"HTTP/1.1 404 Gone\r\nTransfer-Encoding: chunked\r\nX-B: 2\r\n\r\n3\r\ntwo\r\n0\r\n\r\n",
             (404, b"Gone", (b"HTTP", 1, 1), [(b"X-B", b"2")], UNKNOWN_LENGTH, b"two")),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nthree",
             (200, b"OK", (b"HTTP", 1, 1), [], 5, b"three")),
        ]
        first = None
        for raw, expected in answers:
            d = h.request()
            if first is None:
                first = h.connect()
            p, t = first
            p.dataReceived(raw)
            r = self.successResultOf(d)
            self.assertEqual((r.code, r.phrase, r.version, r.end_to_end, r.length, r.whole_body()), expected)
        self.assertEqual(h.pending(), 0)
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 1)

    def test_afterHeadResponse(self) -> None:
        """
        The response after a HEAD response on the same connection is read
        as a response, not as the body the HEAD response announced.
        """
        h = Harness()
        d = h.request(b"HEAD")
        p, t = h.connect()
        p.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n")
        self.assertEqual(self.successResultOf(d).whole_body(), b"")
        d = h.request()
        self.assertEqual(h.pending(), 0)
        p.dataReceived(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok")
        r = self.successResultOf(d)
        self.assertEqual((r.code, r.whole_body()), (202, b"ok"))
        self.assertEqual(h.client.idle_count("127.0.0.1", 8080), 1)


class PureParsingTests(_PureParser, ParsingTests):
    """
    L{ParsingTests} with echogate's own parser.
    """
