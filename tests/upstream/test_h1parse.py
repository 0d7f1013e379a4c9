"""
Tests for L{echogate.upstream.h1parse} as a whole: limits, callbacks, data split
anywhere, and the same callbacks as C{httptools.HttpResponseParser}
(llhttp) for the corpus of good and bad responses in L{tests.h1cases}.
The status line, headers, framing and keep-alive are tested in
L{tests.upstream.test_h1parse_head}, L{tests.upstream.test_h1parse_framing} and
L{tests.upstream.test_h1parse_keepalive}.
"""
from __future__ import annotations

import random
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from echogate.upstream.h1parse import MAX_LINE, HTTPParseError, ResponseParser
from tests.h1cases import (
    CHUNKED,
    CL,
    DIFFERENCES,
    INVALID,
    VALID,
    Event,
    Recorder,
    _ParserTestCase,
    bytewise,
    parse,
    random_pieces,
)

try:
    import httptools
except ImportError:  # PyPy may lack it
    httptools = None


class LimitTests(_ParserTestCase):
    """
    Lines are at most L{MAX_LINE} bytes.
    """

    def test_unfinished_status_line(self) -> None:
        """
        An unfinished status line longer than L{MAX_LINE} is an error, however
        it arrives.
        """
        data = b"HTTP/1.1 200 " + b"a" * MAX_LINE
        self.assertIsInstance(parse(data)[1], HTTPParseError)
        self.assertIsInstance(parse([data[:100], data[100:MAX_LINE], data[MAX_LINE:]])[1], HTTPParseError)
        self.assertIsInstance(parse([data[:i + 1000] for i in range(0, len(data), 1000)])[1], HTTPParseError)

    def test_unfinished_header_line(self) -> None:
        """
        An unfinished header line longer than L{MAX_LINE} is an error; the
        lines before it are reported.
        """
        data = b"HTTP/1.1 200 OK\r\nA: b\r\nX: " + b"a" * MAX_LINE
        events, error = parse([data[i:i + 4096] for i in range(0, len(data), 4096)])
        self.assertIsInstance(error, HTTPParseError)
        self.assertEqual(events[-1], ("header", b"A", b"b"))

    def test_unfinished_chunk_size_line(self) -> None:
        """
        An unfinished chunk-size line longer than L{MAX_LINE} is an error.
        """
        data = CHUNKED + b"3;" + b"a" * MAX_LINE
        self.assertIsInstance(parse([data[i:i + 4096] for i in range(0, len(data), 4096)])[1], HTTPParseError)

    def test_long_line(self) -> None:
        """
        A finished line longer than L{MAX_LINE} is an error too, so that it
        does not matter how it arrived.
        """
        self.assertBad(b"HTTP/1.1 200 " + b"a" * MAX_LINE + b"\r\n\r\n")
        self.assertBad(b"HTTP/1.1 200 OK\r\nX: " + b"a" * MAX_LINE + b"\r\n\r\n")
        self.assertBad(CHUNKED + b"3;" + b"a" * MAX_LINE + b"\r\nabc\r\n0\r\n\r\n")
        self.assertBad(CHUNKED + b"0\r\nX: " + b"a" * MAX_LINE + b"\r\n\r\n")

    def test_longest_line(self) -> None:
        """
        A line of L{MAX_LINE} bytes, its CRLF included, is taken, however it
        arrives.
        """
        value = b"a" * (MAX_LINE - 5)
        data = b"HTTP/1.1 200 OK\r\nX: " + value + b"\r\nContent-Length: 0\r\n\r\n"
        self.assertEqual(self.assertParses(data)[2], ("header", b"X", value))
        status = b"HTTP/1.1 200 " + b"a" * (MAX_LINE - 15) + b"\r\n\r\n"
        self.assertEqual(parse([status[:-4], status[-4:-3], status[-3:]])[1], None)

    def test_long_body(self) -> None:
        """
        Bodies are not lines: they may be of any size, in any pieces.
        """
        body = b"x" * (3 * MAX_LINE)
        events, error = parse([CL + b"%d\r\n\r\n" % len(body), body])
        self.assertEqual((events[-2:], error), ([("body", body), ("complete",)], None))
        events, error = parse([b"HTTP/1.1 200 OK\r\n\r\n", body, body])
        self.assertEqual((events[-1], error), (("body", body + body), None))


class CallbackTests(_ParserTestCase):
    """
    Callbacks, exceptions and the parser's state after them.
    """

    def test_only_existing_callbacks(self) -> None:
        """
        Callbacks the protocol does not have are not called.
        """
        class BodyOnly:
            def __init__(self) -> None:
                self.body: list[bytes] = []

            def on_body(self, data: bytes) -> None:
                self.body.append(data)

        protocol = BodyOnly()
        ResponseParser(protocol).feed_data(VALID["pipelined"] + VALID["chunked-trailers"])
        self.assertEqual(protocol.body, [b"abc", b"x", b"abc"])
        ResponseParser(object()).feed_data(VALID["pipelined"])

    def test_callbacks_looked_up_once(self) -> None:
        """
        Callbacks are looked up when the parser is made.
        """
        recorder = Recorder()
        parser = recorder.parser = ResponseParser(recorder)
        recorder.on_body = lambda data: None  # type: ignore[method-assign]
        parser.feed_data(VALID["content-length"])
        self.assertIn(("body", b"hello"), recorder.events)

    def raising(self, name: str, data: bytes = VALID["content-length"]) -> list[Event]:
        """
        Feed C{data} to a parser whose callback C{name} raises, and check
        that the exception propagates and leaves the parser unusable.

        @return: The events before the exception.
        """
        recorder = Recorder()

        def fail(*args: Any) -> None:
            raise ValueError(name)

        setattr(recorder, name, fail)
        parser = recorder.parser = ResponseParser(recorder)
        e = self.assertRaises(ValueError, parser.feed_data, data)
        self.assertEqual(e.args, (name,))
        self.assertRaises(HTTPParseError, parser.feed_data, b"HTTP/1.1 204 N\r\n\r\n")
        self.assertRaises(HTTPParseError, parser.feed_data, b"")
        return recorder.events

    def test_on_header_raises(self) -> None:
        """
        An exception raised by C{on_header} propagates.
        """
        self.assertEqual(self.raising("on_header"), [("begin",), ("status", b"OK")])

    def test_on_headers_complete_raises(self) -> None:
        """
        An exception raised by C{on_headers_complete} propagates; no body is
        reported.
        """
        self.assertEqual(self.raising("on_headers_complete")[-1], ("header", b"Content-Length", b"5"))

    def test_on_headers_complete_raises_on_interim(self) -> None:
        """
        As http11 does for a 101.
        """
        self.raising("on_headers_complete", DIFFERENCES["switching-protocols"][0])

    def test_other_callbacks_raise(self) -> None:
        """
        An exception raised by any other callback propagates.
        """
        for name in ("on_message_begin", "on_status", "on_body", "on_message_complete"):
            self.raising(name)
        self.raising("on_body", VALID["until-close"])
        self.raising("on_message_complete", VALID["no-content"])

    def test_unusable_after_error(self) -> None:
        """
        After an L{HTTPParseError}, the parser raises it again.
        """
        recorder = Recorder()
        parser = recorder.parser = ResponseParser(recorder)
        self.assertRaises(HTTPParseError, parser.feed_data, INVALID["status-not-http"])
        self.assertRaises(HTTPParseError, parser.feed_data, VALID["content-length"])
        self.assertEqual(recorder.events, [("begin",)])

    def test_getters_before_response(self) -> None:
        """
        Before a response the getters answer something harmless.
        """
        parser = ResponseParser(Recorder())
        self.assertEqual((parser.get_status_code(), parser.get_http_version(), parser.should_keep_alive()),
                         (0, "1.1", False))

    def test_buffer_types(self) -> None:
        """
        C{bytearray} and C{memoryview} may be fed too; callbacks get bytes.
        """
        data = VALID["pipelined"]
        events = parse(data)[0]
        self.assertEqual(parse([bytearray(data[:30]), memoryview(data[30:])]), (events, None))
        self.assertTrue(all(type(x) is bytes for e in events for x in e[1:] if not isinstance(x, (int, str))))


class SplitFeedingTests(_ParserTestCase):
    """
    The events do not depend on how the data is split.
    """

    def test_split(self) -> None:
        """
        Every test response, fed one byte at a time and in random pieces
        (fixed seed), gives the same events (and error or not) as fed whole.
        """
        rng = random.Random(20240601)
        messages = list(VALID.items()) + list(INVALID.items()) + [(k, v[0]) for k, v in DIFFERENCES.items()]
        mismatches = []
        for name, data in messages:
            whole, error = parse(data)
            expected = (whole, type(error))
            splits = [bytewise(data)] + [random_pieces(data, rng) for _ in range(10)]
            for pieces in splits:
                events, split_error = parse(pieces)
                if (events, type(split_error)) != expected:
                    mismatches.append((name, pieces, events, split_error, expected))
                    break
        self.assertEqual(mismatches, [])

    def test_every_split_point(self) -> None:
        """
        A few responses give the same events when split in two at any point,
        and in three around every CRLF.
        """
        for data in (VALID["five-headers"], VALID["chunked-trailers"], VALID["continue-then-200"]):
            expected = parse(data)
            for i in range(len(data) + 1):
                self.assertEqual(parse([data[:i], data[i:]]), expected, (data, i))
                self.assertEqual(parse([data[:i], data[i:i + 1], data[i + 1:]]), expected, (data, i))


class DifferentialTests(SynchronousTestCase):
    """
    The same events as C{httptools.HttpResponseParser} (llhttp).
    """

    def setUp(self) -> None:
        if httptools is None:
            raise SkipTest("httptools is not installed")

    @staticmethod
    def llhttp(data: bytes | list[bytes]) -> tuple[list[Event], BaseException | None]:
        """
        Parse with llhttp, and normalise the two differences that the
        corpus does not leave out: trailing whitespace of header values
        (llhttp keeps it, this parser strips it) and trailers (llhttp
        reports them through C{on_header}, this parser does not).
        """
        events, error = parse(data, httptools.HttpResponseParser)
        normalised: list[Event] = []
        in_body = False
        for event in events:
            if event[0] == "head":
                in_body = True
            elif event[0] == "begin":
                in_body = False
            elif event[0] == "header":
                if in_body:
                    continue  # a trailer
                event = ("header", event[1], event[2].rstrip(b" \t"))
            normalised.append(event)
        return normalised, error

    def compare(self, name: str, data: bytes | list[bytes]) -> str | None:
        """
        @return: Why this parser and llhttp disagree on C{data}, or C{None}.
        """
        ours, our_error = parse(data)
        theirs, their_error = self.llhttp(data)
        if (our_error is None) != (their_error is None):
            return f"{name}: error {our_error!r} here, {their_error!r} in llhttp"
        if our_error is None:
            if ours != theirs:
                return f"{name}: {ours} here, {theirs} in llhttp"
        else:
            # Up to the error, the events agree; one may go further: llhttp
            # reports part of a bad reason phrase, and this parser reports a
            # header before finding that the next line is a fold.
            common = min(len(ours), len(theirs))
            if ours[:common] != theirs[:common] and not (
                    ours[:common - 1] == theirs[:common - 1] and ours[common - 1][0] == "status"):
                return f"{name}: {ours} before the error here, {theirs} in llhttp"
        return None

    def test_corpus(self) -> None:
        """
        For each response of the corpus, fed whole and byte by byte, both
        parsers agree on the events and on whether it is an error.
        """
        self.assertTrue(len(VALID) + len(INVALID) >= 40)
        problems = []
        for name, data in list(VALID.items()) + list(INVALID.items()):
            for fed in (data, bytewise(data)):
                problem = self.compare(name, fed)
                if problem:
                    problems.append(problem)
        self.assertEqual(problems, [])

    def test_differences(self) -> None:
        """
        The documented differences are real: for each, llhttp gives other
        events or errors.
        """
        for name, (data, why) in DIFFERENCES.items():
            self.assertTrue(why, f"row name={name!r} data={data!r} why={why!r}")
            self.assertIsNotNone(self.compare(name, data), name)

    def test_normalised_differences(self) -> None:
        """
        llhttp keeps trailing whitespace in header values and reports
        trailers; this parser does neither.
        """
        data = CHUNKED.replace(b"chunked", b"chunked  ") + b"0\r\nX-T: 1\r\n\r\n"
        self.assertEqual(parse(data, httptools.HttpResponseParser)[0][2:],
                         [("header", b"Transfer-Encoding", b"chunked  "), ("head", 200, "1.1", True),
                          ("header", b"X-T", b"1"), ("complete",)])
        self.assertEqual(parse(data)[0][2:], [("header", b"Transfer-Encoding", b"chunked"),
                                              ("head", 200, "1.1", True), ("complete",)])
