"""
A strict HTTP/1.1 response parser in pure Python (L{ResponseParser}): a
drop-in replacement for the part of C{httptools.HttpResponseParser}
(llhttp) that L{echogate.upstream.connection} uses, so that the lean upstream client
runs on PyPy, whose JIT sees through it (C{httptools} goes through cpyext
there).

It works on whole buffers: lines are found with C{bytes.find} and
C{bytes.split}, and bodies are handed on as slices. A read that holds a
whole head (the usual case) is taken in one straight run, not state by
state; a head seen before (L{echogate.upstream.h1syntax.HEADS}: a
service's heads repeat but for their Date line) is not parsed again, nor
a header line seen before (L{echogate.upstream.h1syntax.LINES}) checked
again. Only an unfinished line is kept between two calls of
L{ResponseParser.feed_data}; a line is reported when it is complete
(C{on_status} once, with the whole reason phrase). The rules of each
line, and what the framing headers mean, are in
L{echogate.upstream.h1syntax}.

Where it knowingly differs from llhttp (strict mode) is listed in
L{echogate.upstream.h1syntax}.
"""
from __future__ import annotations

from typing import Any

from echogate.upstream.h1syntax import (
    HEADS,
    HEX,
    LINES,
    MAX_CONTENT_LENGTH,
    MAX_LINE,
    TEXT,
    Framing,
    HTTPParseError,
    header_line,
    keep_head,
)

# Parser states.
_START = 0  # before a response: CR and LF are skipped, as llhttp does
_STATUS = 1
_HEADERS = 2
_LENGTH = 3  # a body of Content-Length bytes
_CHUNK_SIZE = 4
_CHUNK_DATA = 5
_CHUNK_CR = 6  # the CRLF after a chunk's data
_CHUNK_LF = 7
_TRAILERS = 8
_UNTIL_CLOSE = 9
_DEAD = 10


class ResponseParser:
    """
    Parses the responses read from one connection, calling its protocol's
    C{on_message_begin()}, C{on_status(reason)} (with the reason phrase,
    once per response), C{on_header(name, value)},
    C{on_headers_complete()}, C{on_body(data)} (any number of times) and
    C{on_message_complete()}: those it has, as C{httptools} does.

    An exception raised by L{feed_data} (a L{HTTPParseError}, or one a
    callback raised) leaves the parser unusable.
    """

    __slots__ = ("_on_message_begin", "_on_status", "_on_header", "_on_headers_complete", "_on_body",
                 "_on_message_complete", "_state", "_parts", "_parts_length", "_remaining", "_code", "_minor",
                 "_keep_alive", "_framing")

    def __init__(self, protocol: Any):
        """
        @param protocol: The object whose C{on_*} methods are called.
        """
        self._on_message_begin = getattr(protocol, "on_message_begin", None)
        self._on_status = getattr(protocol, "on_status", None)
        self._on_header = getattr(protocol, "on_header", None)
        self._on_headers_complete = getattr(protocol, "on_headers_complete", None)
        self._on_body = getattr(protocol, "on_body", None)
        self._on_message_complete = getattr(protocol, "on_message_complete", None)
        self._state = _START
        # An unfinished line: its pieces and their total length.
        self._parts: list[bytes] | None = None
        self._parts_length = 0
        # Body (or chunk) bytes still to come.
        self._remaining = 0
        # The current response (its framing is made anew when it begins).
        self._code = 0
        self._minor = 1
        self._keep_alive = False
        self._framing = Framing()

    def get_status_code(self) -> int:
        """
        @return: The current response's status code.
        """
        return self._code

    def get_http_version(self) -> str:
        """
        @return: The current response's HTTP version: C{"1.0"} or C{"1.1"}.
        """
        return "1.1" if self._minor else "1.0"

    def should_keep_alive(self) -> bool:
        """
        Whether the connection can carry another response after this one
        (valid once the head is parsed): HTTP/1.1 unless a Connection
        header has the C{close} token, HTTP/1.0 only with a C{keep-alive}
        token, and never when the body ends with the connection.

        @return: C{True} if the connection may be reused.
        """
        return self._keep_alive

    def feed_data(self, data: bytes) -> None:
        """
        Parse the bytes that arrived, calling the protocol's callbacks.

        @param data: The next bytes read, split anywhere.
        @raise HTTPParseError: The response is malformed, or the parser
            failed earlier.
        """
        if type(data) is not bytes:
            data = bytes(data)
        state = self._state
        if state == _DEAD:
            raise HTTPParseError("the parser failed earlier")
        parts = self._parts
        if parts is not None:
            parts.append(data)
            if b"\n" not in data:  # the line goes on
                self._parts_length += len(data)
                if self._parts_length > MAX_LINE:
                    self._state = _DEAD
                    raise HTTPParseError("line too long")
                return
            data = b"".join(parts)
            self._parts = None
        # Until it returns normally the parser is dead: anything raised (by
        # it or by a callback) leaves it so.
        self._state = _DEAD
        pos = 0
        end = len(data)
        if state == _START and end > 16 and data[0] == 72:  # "H"
            # The usual read: a whole head (and often its whole body), taken
            # in one straight run rather than state by state; the loop below
            # takes whatever is left.
            last = data.find(b"\r\n\r\n")
            if last >= 0:
                self._begin()
                pos = self._status_line(data, 0, data.find(b"\r\n"))
                if pos < last:
                    self._head(data, pos, last)
                pos = last + 4
                state = self._head_done()
                if state == _LENGTH and end - pos >= self._remaining:
                    stop = pos + self._remaining
                    self._remaining = 0
                    if self._on_body is not None:
                        self._on_body(data[pos:stop])
                    pos = stop
                    state = _START
                    if self._on_message_complete is not None:
                        self._on_message_complete()
        while pos < end:
            if state == _START:
                byte = data[pos]
                while byte == 13 or byte == 10:
                    pos += 1
                    if pos == end:
                        self._state = _START
                        return
                    byte = data[pos]
                self._begin()
                state = _STATUS

            elif state == _STATUS:
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    break
                pos = self._status_line(data, pos, eol)
                state = _HEADERS

            elif state == _HEADERS or state == _TRAILERS:
                # The complete lines at hand are taken at once (see
                # _header_lines); the empty line ends the head, or the
                # trailers.
                if data.startswith(b"\r\n", pos):
                    pos += 2  # the empty line
                else:
                    last = data.find(b"\r\n\r\n", pos)
                    if last < 0:
                        stop = data.rfind(b"\r\n", pos)
                        if stop < 0:
                            break
                        self._header_lines(data, pos, stop, state)
                        pos = stop + 2
                        break
                    self._header_lines(data, pos, last, state)
                    pos = last + 4  # after the last line and the empty one
                if state == _HEADERS:
                    state = self._head_done()
                else:
                    state = _START
                    if self._on_message_complete is not None:
                        self._on_message_complete()

            elif state == _LENGTH or state == _CHUNK_DATA:
                remaining = self._remaining
                stop = pos + remaining
                if stop > end:
                    stop = end
                if self._on_body is not None:
                    self._on_body(data if pos == 0 and stop == end else data[pos:stop])
                self._remaining = remaining = remaining - (stop - pos)
                pos = stop
                if remaining == 0:
                    if state == _CHUNK_DATA:
                        state = _CHUNK_CR
                    else:
                        state = _START
                        if self._on_message_complete is not None:
                            self._on_message_complete()

            elif state == _CHUNK_SIZE:
                # 1*16HEXDIG [";" extensions] CRLF
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    break
                semi = data.find(b";", pos, eol)
                stop = semi if semi >= 0 else eol
                digits = data[pos:stop]
                if (not 0 < stop - pos <= 16 or digits.translate(None, HEX) or eol + 2 - pos > MAX_LINE
                        or (semi >= 0 and data[semi + 1:eol].translate(None, TEXT))):
                    raise HTTPParseError("invalid chunk size line: %r" % (data[pos:min(eol, pos + 100)],))
                self._remaining = int(digits, 16)
                state = _CHUNK_DATA if self._remaining else _TRAILERS
                pos = eol + 2

            elif state == _CHUNK_CR:
                if data[pos] != 13:
                    raise HTTPParseError("no CRLF after chunk data")
                pos += 1
                state = _CHUNK_LF
            elif state == _CHUNK_LF:
                if data[pos] != 10:
                    raise HTTPParseError("no CRLF after chunk data")
                pos += 1
                state = _CHUNK_SIZE

            else:  # _UNTIL_CLOSE
                if self._on_body is not None:
                    self._on_body(data if pos == 0 else data[pos:])
                pos = end

        if pos < end:
            # An unfinished line, kept for the next call. No CRLF in it, so
            # an LF or a CR before its last byte is a bare one: fail now.
            cr = data.find(b"\r", pos)
            if data.find(b"\n", pos) >= 0 or 0 <= cr < end - 1:
                raise HTTPParseError("line not ended by CRLF")
            if end - pos > MAX_LINE:
                raise HTTPParseError("line too long")
            self._parts = [data[pos:] if pos else data]
            self._parts_length = end - pos
        self._state = state

    def _begin(self) -> None:
        """
        A response begins.
        """
        self._framing = Framing()
        self._keep_alive = False
        if self._on_message_begin is not None:
            self._on_message_begin()

    def _status_line(self, data: bytes, pos: int, eol: int) -> int:
        """
        Take the status line at C{pos}, whose CRLF is at C{eol}.

        @return: Where the line after it starts.
        @raise HTTPParseError: It is bad.
        """
        # HTTP/1.x SP 3DIGIT [SP reason] CRLF
        if eol - pos < 12 or eol + 2 - pos > MAX_LINE or not data.startswith(b"HTTP/1.", pos):
            raise HTTPParseError("invalid status line: %r" % (data[pos:min(eol, pos + 100)],))
        minor = data[pos + 7] - 48
        hundreds = data[pos + 9] - 48
        tens = data[pos + 10] - 48
        units = data[pos + 11] - 48
        if (not (minor == 0 or minor == 1) or data[pos + 8] != 32 or not 0 < hundreds < 10
                or not 0 <= tens < 10 or not 0 <= units < 10 or (eol > pos + 12 and data[pos + 12] != 32)):
            raise HTTPParseError("invalid status line: %r" % (data[pos:min(eol, pos + 100)],))
        self._minor = minor
        self._code = hundreds * 100 + tens * 10 + units
        if eol > pos + 12:  # a reason, maybe empty
            reason = data[pos + 13:eol]
            if reason.translate(None, TEXT):
                raise HTTPParseError("invalid reason phrase: %r" % (reason[:100],))
            if self._on_status is not None:
                self._on_status(reason)
        return eol + 2

    def _head(self, data: bytes, pos: int, stop: int) -> None:
        """
        Take a whole head's header lines, from C{pos} to C{stop} (where
        the last one's CRLF is): what a head seen before (L{HEADS}) says,
        else line by line (L{_header_lines}), and then kept.

        @raise HTTPParseError: A line is bad.
        """
        block = data[pos:stop]
        known = HEADS.get(block)
        if known is not None:
            self._framing = known[1]
            on_header = self._on_header
            if on_header is not None:
                for name, value in known[0]:
                    on_header(name, value)
            return
        pairs: list[tuple[bytes, bytes]] = []
        self._header_lines(data, pos, stop, _HEADERS, pairs)
        keep_head(block, pairs, self._framing)

    def _header_lines(self, data: bytes, pos: int, stop: int, state: int,
                      pairs: list[tuple[bytes, bytes]] | None = None) -> None:
        """
        Take the complete header (or trailer) lines from C{pos} to C{stop}
        (where the last one's CRLF is), in order (and into C{pairs}, when
        given, their names and values). A line seen before
        (L{LINES}) is known to be good, and what it says; any other is
        checked whole (control characters, a bare CR or LF, its length, a
        colon after a token) before it is reported, so that the good lines
        before a bad one are reported however the data was split.

        @raise HTTPParseError: A line is bad.
        """
        lines = data[pos:stop].split(b"\r\n")
        known_lines = LINES
        if state == _HEADERS:
            on_header = self._on_header
            framing = self._framing
            for line in lines:
                known = known_lines.get(line)
                if known is None:
                    known = header_line(line)
                name, value, kind = known
                if kind:
                    framing.take(kind, value)
                if on_header is not None:
                    on_header(name, value)
                if pairs is not None:
                    pairs.append((name, value))
        else:
            # Trailers: checked like headers, but echogate has no use for
            # them.
            for line in lines:
                if line not in known_lines:
                    header_line(line, "trailer")

    def _head_done(self) -> int:
        """
        The empty line after the headers: work out the body's framing and
        whether the connection stays, and report the head (and the end of
        a response without a body).

        @return: The next state.
        """
        code = self._code
        framing = self._framing
        if code < 200 or code == 204 or code == 304:
            state = _START  # no body (after a 1xx, the next head)
        elif framing.transfer_encoding:
            state = _CHUNK_SIZE if framing.chunked else _UNTIL_CLOSE
        elif framing.content_length > 0:
            state = _LENGTH
            self._remaining = framing.content_length
        elif framing.content_length == 0:
            state = _START
        else:
            state = _UNTIL_CLOSE
        self._keep_alive = state != _UNTIL_CLOSE and (not framing.close if self._minor else framing.keep_alive)
        if self._on_headers_complete is not None:
            self._on_headers_complete()
        if state == _START and self._on_message_complete is not None:
            self._on_message_complete()
        return state


__all__ = ["ResponseParser", "HTTPParseError", "MAX_LINE", "MAX_CONTENT_LENGTH"]
