"""
Tests for L{echogate.upstream.h1parse}: the body's framing (Content-Length,
chunked, until close, none), and the chunked coding itself.
"""
from __future__ import annotations

from echogate.upstream.h1parse import MAX_CONTENT_LENGTH, HTTPParseError, ResponseParser
from tests.h1cases import CHUNKED, CL, DIFFERENCES, INVALID, VALID, Recorder, _ParserTestCase


class FramingTests(_ParserTestCase):
    """
    How the body is delimited.
    """

    def test_content_length(self) -> None:
        """
        With Content-Length, the body is that many bytes.
        """
        self.assertEqual(self.assertParses(VALID["content-length"]), [
            ("begin",), ("status", b"OK"), ("header", b"Content-Type", b"text/plain"),
            ("header", b"Content-Length", b"5"), ("head", 200, "1.1", True), ("body", b"hello"), ("complete",)])

    def test_content_length_zero(self) -> None:
        """
        With C{Content-Length: 0} the response is complete after the head.
        """
        self.assertEqual(self.assertParses(CL + b"0\r\n\r\n")[-2:], [("head", 200, "1.1", True), ("complete",)])

    def test_content_length_incomplete(self) -> None:
        """
        Until the body has all its bytes, the response is not complete.
        """
        self.assertEqual(self.assertParses(VALID["partial-body"])[-1], ("body", b"abc"))

    def test_content_length_leading_zeros(self) -> None:
        """
        Leading zeros are allowed.
        """
        self.assertEqual(self.assertParses(VALID["length-leading-zeros"])[-2:], [("body", b"abc"), ("complete",)])

    def test_content_length_largest(self) -> None:
        """
        A Content-Length of 2**63 is taken.
        """
        self.assertEqual(MAX_CONTENT_LENGTH, 2 ** 63)
        self.assertEqual(self.assertParses(VALID["length-2**63"])[-1], ("body", b"abc"))

    def test_content_length_too_large(self) -> None:
        """
        A Content-Length above 2**63 is an error.
        """
        self.assertBad(CL + b"9223372036854775809\r\n\r\n")
        self.assertBad(INVALID["length-2**64"])
        self.assertBad(CL + b"1" * 5000 + b"\r\n\r\n")

    def test_content_length_twice(self) -> None:
        """
        A second Content-Length is an error, even with the same value (as in
        llhttp's strict mode).
        """
        self.assertEqual(self.assertBad(INVALID["length-twice-same"])[-1], ("header", b"Content-Length", b"3"))

    def test_content_length_conflict(self) -> None:
        """
        Two different Content-Length values are an error.
        """
        self.assertBad(INVALID["length-twice-different"])

    def test_content_length_empty(self) -> None:
        """
        An empty Content-Length is an error.
        """
        self.assertBad(INVALID["length-empty"])

    def test_content_length_sign(self) -> None:
        """
        A sign in Content-Length is an error.
        """
        self.assertBad(INVALID["length-plus"])
        self.assertBad(INVALID["length-minus"])

    def test_content_length_space_inside(self) -> None:
        """
        A space inside Content-Length is an error.
        """
        self.assertBad(INVALID["length-space-inside"])

    def test_content_length_list(self) -> None:
        """
        A list as Content-Length is an error.
        """
        self.assertBad(INVALID["length-list"])

    def test_content_length_not_decimal(self) -> None:
        """
        A hexadecimal or non-ASCII-digit Content-Length is an error.
        """
        self.assertBad(INVALID["length-hex"])
        self.assertBad(CL + "\u0663".encode() + b"\r\n\r\n")

    def test_content_length_and_transfer_encoding(self) -> None:
        """
        Content-Length and Transfer-Encoding together are an error, in either
        order.
        """
        self.assertBad(INVALID["length-then-chunked"])
        self.assertBad(INVALID["chunked-then-length"])

    def test_transfer_encoding_empty(self) -> None:
        """
        An empty Transfer-Encoding is an error (as in llhttp).
        """
        self.assertBad(INVALID["transfer-encoding-empty"])

    def test_transfer_encoding_not_chunked(self) -> None:
        """
        A Transfer-Encoding whose last coding is not C{chunked} makes the
        body last until the connection closes.
        """
        for name in ("chunked-not-last", "chunked-then-other", "chunked-parameter"):
            events = self.assertParses(VALID[name])
            self.assertEqual(events[-2][3], False, f"row name={name!r}")
            self.assertEqual(events[-1][0], "body", f"row name={name!r}")
            self.assertEqual(VALID[name].endswith(events[-1][1]), True, f"row name={name!r}")

    def test_until_close(self) -> None:
        """
        Without Content-Length or Transfer-Encoding, the body lasts until the
        connection closes: everything is body, and the response is never
        complete.
        """
        events = self.assertParses(VALID["until-close"])
        self.assertEqual(events[-2:], [("head", 200, "1.1", False),
                                       ("body", b"some body\r\n\r\nHTTP/1.1 200 OK\r\n")])

    def test_interim_then_final(self) -> None:
        """
        A 1xx response has no body and is followed by another response.
        """
        self.assertEqual(self.assertParses(VALID["early-hints-then-200"]), [
            ("begin",), ("status", b"Early Hints"), ("header", b"Link", b"</a.css>; rel=preload"),
            ("head", 103, "1.1", True), ("complete",),
            ("begin",), ("status", b"OK"), ("header", b"Content-Length", b"1"), ("head", 200, "1.1", True),
            ("body", b"x"), ("complete",)])

    def test_interim_with_content_length(self) -> None:
        """
        A 1xx response has no body even with a Content-Length.
        """
        events = self.assertParses(DIFFERENCES["interim-with-length"][0])
        self.assertEqual([e[0] for e in events],
                         ["begin", "status", "header", "head", "complete", "begin", "status", "head", "complete"])

    def test_switching_protocols(self) -> None:
        """
        A 101 response is like other 1xx responses (http11 stops at it).
        """
        events = self.assertParses(DIFFERENCES["switching-protocols"][0])
        self.assertEqual(events[3:6], [("head", 101, "1.1", True), ("complete",), ("begin",)])

    def test_no_content(self) -> None:
        """
        A 204 response has no body, whatever its headers say.
        """
        self.assertEqual(self.assertParses(VALID["no-content"] + b"HTTP/1.1 204 N\r\n\r\n")[3:6],
                         [("head", 204, "1.1", True), ("complete",), ("begin",)])

    def test_not_modified(self) -> None:
        """
        A 304 response has no body, whatever its headers say.
        """
        self.assertEqual(self.assertParses(VALID["not-modified"])[3:], [("head", 304, "1.1", True), ("complete",)])

    def test_pipelined(self) -> None:
        """
        Two responses in one buffer are both parsed.
        """
        self.assertEqual(self.assertParses(VALID["pipelined"]), [
            ("begin",), ("status", b"OK"), ("header", b"Content-Length", b"3"), ("head", 200, "1.1", True),
            ("body", b"abc"), ("complete",),
            ("begin",), ("status", b"Created"), ("header", b"Transfer-Encoding", b"chunked"),
            ("head", 201, "1.1", True), ("body", b"x"), ("complete",)])

    def test_next_response_later(self) -> None:
        """
        Bytes arriving after a complete response, in a later call, begin the
        next one; a second bad response is an error.
        """
        recorder = Recorder()
        parser = recorder.parser = ResponseParser(recorder)
        parser.feed_data(CL + b"0\r\n\r\n")
        self.assertEqual(recorder.events[-1], ("complete",))
        parser.feed_data(b"\r\n")
        self.assertEqual(recorder.events[-1], ("complete",))
        parser.feed_data(b"X")
        self.assertEqual(recorder.events[-1], ("begin",))
        self.assertRaises(HTTPParseError, parser.feed_data, b"\r\n")
        self.assertBad(INVALID["second-response-bad"])

    def test_data_after_close(self) -> None:
        """
        Bytes after a response that closes the connection begin the next
        response too (http11 notices them in C{on_message_begin}).
        """
        events = self.assertParses(DIFFERENCES["data-after-close"][0])
        self.assertEqual(events[4:7], [("head", 200, "1.1", False), ("complete",), ("begin",)])


class ChunkedTests(_ParserTestCase):
    """
    Chunked bodies.
    """

    def test_chunks(self) -> None:
        """
        The chunks' data is the body; the last chunk completes the response.
        """
        events = self.assertParses(VALID["chunked"])
        self.assertEqual(events[-3:], [("head", 200, "1.1", True), ("body", b"hello" + bytes(range(97, 123))),
                                       ("complete",)])

    def test_hex_digits(self) -> None:
        """
        Sizes are hexadecimal, in either case, with up to 16 digits.
        """
        self.assertEqual(self.assertParses(VALID["chunked-upper-hex"])[-2], ("body", b"0123456789"))
        self.assertEqual(self.assertParses(VALID["chunked-16-digits"])[-2], ("body", b"abc"))

    def test_extensions(self) -> None:
        """
        Chunk extensions are ignored.
        """
        self.assertEqual(self.assertParses(VALID["chunked-extensions"])[-2:], [("body", b"abc"), ("complete",)])
        self.assertEqual(self.assertParses(DIFFERENCES["chunk-extension-space"][0])[-1], ("complete",))
        self.assertEqual(self.assertParses(DIFFERENCES["chunk-extension-empty"][0])[-1], ("complete",))

    def test_trailers(self) -> None:
        """
        Trailer lines are checked but not reported.
        """
        self.assertEqual(self.assertParses(VALID["chunked-trailers"])[-3:],
                         [("head", 200, "1.1", True), ("body", b"abc"), ("complete",)])

    def test_last_coding(self) -> None:
        """
        The body is chunked when the last coding of the last
        Transfer-Encoding is C{chunked} (any case, any whitespace around).
        """
        self.assertEqual(self.assertParses(VALID["gzip-chunked"])[-1], ("complete",))
        self.assertEqual(self.assertParses(VALID["chunked-last-of-two"])[-1], ("complete",))
        self.assertEqual(self.assertParses(DIFFERENCES["chunked-trailing-tab"][0])[-1], ("complete",))
        self.assertEqual(self.assertParses(CHUNKED.replace(b" chunked", b"\tgzip ,\tchunked \t") + b"0\r\n\r\n")[-1],
                         ("complete",))

    def test_incomplete(self) -> None:
        """
        Without its last chunk, the response is not complete.
        """
        self.assertEqual(self.assertParses(CHUNKED + b"3\r\nabc\r\n0")[-1], ("body", b"abc"))

    def test_size_empty(self) -> None:
        """
        An empty size is an error.
        """
        self.assertBad(INVALID["chunk-size-empty"])

    def test_size_not_hex(self) -> None:
        """
        A size that is not hexadecimal is an error.
        """
        self.assertBad(INVALID["chunk-size-not-hex"])

    def test_size_0x(self) -> None:
        """
        A C{0x} prefix is an error.
        """
        self.assertBad(INVALID["chunk-size-0x"])

    def test_size_sign_or_underscore(self) -> None:
        """
        What C{int(s, 16)} would take but is not hexadecimal digits is an
        error.
        """
        self.assertBad(CHUNKED + b"+3\r\nabc\r\n0\r\n\r\n")
        self.assertBad(CHUNKED + b"1_0\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n")

    def test_size_space_before(self) -> None:
        """
        A space before the size is an error.
        """
        self.assertBad(INVALID["chunk-size-space-before"])

    def test_size_space_after(self) -> None:
        """
        A space after the size is an error.
        """
        self.assertBad(INVALID["chunk-size-space-after"])

    def test_size_too_long(self) -> None:
        """
        More than 16 hex digits is an error.
        """
        self.assertBad(DIFFERENCES["chunk-size-17-digits"][0])

    def test_size_bare_lf(self) -> None:
        """
        A size line ended by a bare LF is an error.
        """
        self.assertBad(INVALID["chunk-size-bare-lf"])

    def test_extension_nul(self) -> None:
        """
        NUL in an extension is an error.
        """
        self.assertBad(INVALID["chunk-extension-nul"])

    def test_extension_bare_cr(self) -> None:
        """
        A bare CR in an extension is an error.
        """
        self.assertBad(CHUNKED + b"3;a\rb\r\nabc\r\n0\r\n\r\n")

    def test_data_not_followed_by_crlf(self) -> None:
        """
        Anything but CRLF after a chunk's data is an error; the data is
        reported first.
        """
        self.assertEqual(self.assertBad(INVALID["chunk-data-too-long"])[-1], ("body", b"abc"))

    def test_data_followed_by_bare_lf(self) -> None:
        """
        A bare LF after a chunk's data is an error.
        """
        self.assertBad(INVALID["chunk-data-bare-lf"])

    def test_data_followed_by_cr_only(self) -> None:
        """
        A CR not followed by LF after a chunk's data is an error.
        """
        self.assertBad(CHUNKED + b"3\r\nabc\rx0\r\n\r\n")

    def test_trailer_without_colon(self) -> None:
        """
        A trailer line without a colon is an error.
        """
        self.assertBad(INVALID["trailer-no-colon"])

    def test_trailer_bad_name(self) -> None:
        """
        A trailer name that is not a token is an error.
        """
        self.assertBad(CHUNKED + b"0\r\nX Y: 1\r\n\r\n")

    def test_trailer_bare_lf(self) -> None:
        """
        A trailer line ended by a bare LF is an error.
        """
        self.assertBad(INVALID["trailer-bare-lf"])

    def test_trailers_ended_by_bare_lf(self) -> None:
        """
        A bare LF as the empty line after the last chunk is an error.
        """
        self.assertBad(INVALID["trailers-end-bare-lf"])
