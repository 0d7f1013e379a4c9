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

from echogate.upstream import h1parse, h1syntax
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
    coalesce,
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


class LineCacheTests(_ParserTestCase):
    """
    Header lines seen before (L{h1syntax.LINES}) are neither checked nor
    split again; bad lines are never kept; the cache is bounded.
    """

    def setUp(self) -> None:
        h1syntax.LINES.clear()
        # (Whole heads are not looked up: see HeadCacheTests.)
        self.patch(h1syntax, "HEADS", _NeverKept())
        self.patch(h1parse, "HEADS", h1syntax.HEADS)
        self.checked: list[bytes] = []

        def counting(line: bytes, what: str = "header") -> tuple[bytes, bytes, int]:
            self.checked.append(line)
            return h1syntax.header_line(line, what)

        self.patch(h1parse, "header_line", counting)

    def test_seen_lines_not_checked(self) -> None:
        """
        The lines of a response seen before are not checked again, and
        give the same events.
        """
        data = b"HTTP/1.1 200 OK\r\nServer: s\r\nX-A:  a b \t\r\nContent-Length: 2\r\n\r\nhi"
        first = self.assertParses(data)
        self.assertEqual(self.checked, [b"Server: s", b"X-A:  a b \t", b"Content-Length: 2"])
        self.assertIn(("header", b"X-A", b"a b"), first)
        del self.checked[:]
        self.assertEqual(self.assertParses(data), first)
        self.assertEqual(self.checked, [])
        self.assertEqual(parse(data.replace(b"X-A: ", b"X-A:"))[0], first)
        self.assertEqual(self.checked, [b"X-A: a b \t"])

    def test_seen_lines_still_frame(self) -> None:
        """
        A framing line seen before still frames the body and is still
        checked against the others.
        """
        self.assertParses(CL + b"3\r\n\r\nabc")
        self.assertBad(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc")
        self.assertBad(CL + b"3\r\nContent-Length: 3\r\n\r\nabc")
        events = self.assertParses(CL + b"3\r\n\r\nabcHTTP/1.1 204 No\r\n\r\n")
        self.assertEqual(events.count(("complete",)), 2)

    def test_bad_lines_not_kept(self) -> None:
        """
        A bad header or trailer line is an error every time: it is not
        kept.
        """
        for bad in (b"X: a\x01b", b"no-colon", b"Bad Name: x", b": x", b"X: a\rb"):
            for _ in range(2):
                self.assertBad(b"HTTP/1.1 200 OK\r\n" + bad + b"\r\nContent-Length: 0\r\n\r\n")
                self.assertBad(CHUNKED + b"0\r\n" + bad + b"\r\n\r\n")
            self.assertNotIn(bad, h1syntax.LINES)

    def test_bounded(self) -> None:
        """
        The cache is emptied when it reaches L{h1syntax.LINES_MAX} lines.
        """
        self.patch(h1syntax, "LINES_MAX", 3)
        for i in range(10):
            events = self.assertParses(b"HTTP/1.1 200 OK\r\nX-%d: %d\r\nContent-Length: 0\r\n\r\n" % (i, i))
            self.assertIn(("header", b"X-%d" % i, b"%d" % i), events)
            self.assertLessEqual(len(h1syntax.LINES), 3)


class _NeverKept(dict):  # type: ignore[type-arg]
    """
    A L{h1syntax.HEADS} that keeps nothing.
    """

    def __setitem__(self, key: Any, value: Any) -> None:
        pass


class HeadCacheTests(_ParserTestCase):
    """
    A whole head seen before (L{h1syntax.HEADS}) is not parsed again, and
    gives the same events; bad heads are never kept; the cache is
    bounded, and holds short heads only.
    """

    def setUp(self) -> None:
        h1syntax.HEADS.clear()
        self.lines: list[bytes] = []
        header_lines = ResponseParser._header_lines

        def counting(parser: ResponseParser, data: bytes, pos: int, stop: int, *args: Any) -> None:
            self.lines.append(data[pos:stop])
            header_lines(parser, data, pos, stop, *args)

        self.patch(ResponseParser, "_header_lines", counting)

    def test_seen_heads_not_parsed(self) -> None:
        """
        The second time a head comes whole, its lines are not parsed; the
        events, framing included, are the same.
        """
        for data in (VALID["five-headers"], VALID["pipelined"], VALID["chunked-trailers"], VALID["http10-keep-alive"],
                     VALID["connection-close"], VALID["until-close"], VALID["continue-then-200"]):
            first = parse(data)
            self.assertIsNone(first[1])
            self.assertTrue(self.lines, data)
            del self.lines[:]
            self.assertEqual(parse(data), first)
            # (Only a read that starts with a whole head looks it up.)
            self.assertNotIn(data[data.index(b"\r\n") + 2:data.index(b"\r\n\r\n")], self.lines)
            self.assertEqual(self.assertParses(data), first[0])
            del self.lines[:]

    def test_framing_kept(self) -> None:
        """
        What a kept head says of the framing and of the connection is
        that head's, whatever other heads were parsed in between.
        """
        length = CL + b"3\r\nConnection: close\r\n\r\nabc"
        chunked = CHUNKED + b"3\r\nabc\r\n0\r\n\r\n"
        events = [self.assertParses(length), self.assertParses(chunked)]
        for _ in range(2):
            for data, expected in zip((length, chunked), events):
                recorder = Recorder()
                parser = recorder.parser = ResponseParser(recorder)
                parser.feed_data(data)
                self.assertEqual(coalesce(recorder.events), expected)
                self.assertFalse(parser.should_keep_alive() and data is length)

    def test_bad_heads_not_kept(self) -> None:
        """
        A head with a bad line, or one whose framing lines conflict, is an
        error every time.
        """
        for head in (b"X: 1\r\nno-colon", b"Content-Length: 1\r\nContent-Length: 1",
                     b"Transfer-Encoding: chunked\r\nContent-Length: 1", b"X: a\x01b"):
            for _ in range(2):
                self.assertBad(b"HTTP/1.1 200 OK\r\n" + head + b"\r\n\r\nx")
            self.assertNotIn(head, h1syntax.HEADS)

    def test_header_callback_raises(self) -> None:
        """
        C{on_header} raising stops a kept head as it stops one parsed.
        """
        data = VALID["five-headers"]
        seen: list[bytes] = []

        def on_header(name: bytes, value: bytes) -> None:
            seen.append(name)
            if len(seen) == 2:
                raise ValueError("enough")

        block = data[data.index(b"\r\n") + 2:data.index(b"\r\n\r\n")]
        for kept in (False, True):
            self.assertEqual(block in h1syntax.HEADS, kept)
            del seen[:]
            recorder = Recorder()
            recorder.on_header = on_header  # type: ignore[method-assign]
            parser = ResponseParser(recorder)
            self.assertRaises(ValueError, parser.feed_data, data)
            self.assertEqual(len(seen), 2)
            self.assertRaises(HTTPParseError, parser.feed_data, data)
            parse(data)

    def test_bounded(self) -> None:
        """
        The cache is emptied when it reaches L{h1syntax.HEADS_MAX} heads;
        heads longer than L{h1syntax.HEAD_KEPT_MAX} bytes are not kept.
        """
        self.patch(h1syntax, "HEADS_MAX", 3)
        for i in range(10):
            self.assertParses(b"HTTP/1.1 200 OK\r\nX-%d: %d\r\nContent-Length: 0\r\n\r\n" % (i, i))
            self.assertLessEqual(len(h1syntax.HEADS), 3)
        h1syntax.HEADS.clear()
        long = b"X: " + b"a" * h1syntax.HEAD_KEPT_MAX
        self.assertParses(b"HTTP/1.1 200 OK\r\n" + long + b"\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(h1syntax.HEADS, {})


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
