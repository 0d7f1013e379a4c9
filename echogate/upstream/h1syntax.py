"""
The syntax of an HTTP/1.1 response head as L{echogate.upstream.h1parse}
checks it: the limits on lines and on Content-Length, the characters of
text, tokens and chunk sizes, header names (checked once, then known), and
what the values of the headers that frame a body or keep a connection
mean. The parser's state machine is in L{echogate.upstream.h1parse}; this
module has no state but the shared cache of header names.

Where L{echogate.upstream.h1parse.ResponseParser} knowingly differs from
llhttp (strict mode):

  - only C{HTTP/1.0} and C{HTTP/1.1} are accepted (llhttp also takes
    C{HTTP/0.9} and C{HTTP/2.0}), and status codes 100-999 (llhttp takes
    C{000}-C{099});
  - the reason phrase must not contain control characters other than HTAB
    (llhttp passes them on);
  - header values are reported without trailing whitespace (llhttp strips
    only the leading whitespace);
  - every 1xx response (101 too) has no body and is followed by another
    response head (llhttp reads a body framed by Content-Length for 1xx
    other than 100, 102 and 103, and stops at a 101);
  - bytes after a response that does not keep the connection alive start
    the next response (llhttp fails with "Data after C{Connection:
    close}"); the caller sees them through C{on_message_begin};
  - Content-Length above 2**63 and chunk sizes of more than 16 hex digits
    are errors (llhttp allows up to 2**64 - 1, and leading zeros);
  - chunk extensions are only checked for control characters (llhttp
    checks their syntax: C{3;} or C{3;a b} are errors there);
  - trailer lines are checked like header lines but not reported through
    C{on_header} (llhttp reports them);
  - a status, header, trailer or chunk-size line longer than L{MAX_LINE}
    bytes is an error (when it is unfinished too: nothing more is kept);
  - a line is checked whole before it is reported, so nothing of a bad
    line is (llhttp may report part of a bad reason phrase first).

As llhttp does, it skips CR and LF bytes before a status line, and rejects
a second Content-Length header even when it has the same value.
"""
from __future__ import annotations

#: The longest status, header, trailer or chunk-size line, its CRLF
#: included; an unfinished line is an error as soon as it is longer.
MAX_LINE = 80 * 1024

#: The largest Content-Length accepted.
MAX_CONTENT_LENGTH = 2 ** 63


class HTTPParseError(Exception):
    """
    The response is not well-formed HTTP/1.1 (or is one llhttp's strict
    mode rejects); the parser that raised it is unusable.
    """


#: What is allowed in a reason phrase, a header value and a chunk
#: extension: HTAB, SP, visible ASCII and obs-text (0x80-0xFF); not the
#: other control characters. Checks delete these with C{bytes.translate}
#: and look at what is left: quicker than a compiled pattern, on PyPy
#: (twice) and on CPython.
TEXT = bytes([9]) + bytes(range(32, 127)) + bytes(range(128, 256))
#: The characters of a token (a header name).
TOKEN = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#: The digits of a chunk size.
HEX = b"0123456789ABCDEFabcdef"

#: The kind of a header name: not one of the following, or one that frames
#: the body or says whether the connection stays.
PLAIN = 0
CONTENT_LENGTH = 1
TRANSFER_ENCODING = 2
CONNECTION = 3
_KINDS = {b"content-length": CONTENT_LENGTH, b"transfer-encoding": TRANSFER_ENCODING,
          b"connection": CONNECTION}

#: Header names already checked (they are tokens), as sent, and their kind:
#: the same few names come in every response. Shared by all parsers; it
#: stops growing at L{NAMES_MAX} names.
NAMES: dict[bytes, int] = {}
NAMES_MAX = 2048


#: Header lines already checked, as received (without their CRLF), and
#: what they say: the name, the value without surrounding spaces and tabs,
#: and the name's kind. A service sends the same lines in every response
#: but for a few (a Date line changes each second), so most lines need
#: neither a check nor a split. Shared by all parsers; emptied when it
#: reaches L{LINES_MAX} lines, so that lines that changed leave it.
LINES: dict[bytes, tuple[bytes, bytes, int]] = {}
LINES_MAX = 1024


#: Whole response heads already parsed: the bytes between the status line
#: and the empty line, and what they say (the header lines' names and
#: values, and the framing they give, which is not changed once made).
#: A service's heads differ from one second to the next (their Date
#: line), so most responses find theirs here. Shared by all parsers;
#: emptied when it reaches L{HEADS_MAX} heads; heads longer than
#: L{HEAD_KEPT_MAX} bytes are not kept.
HEADS: dict[bytes, tuple[tuple[tuple[bytes, bytes], ...], "Framing"]] = {}
HEADS_MAX = 256
HEAD_KEPT_MAX = 4096


def check_line(line: bytes) -> None:
    """
    Check one header or trailer line, without its CRLF, for control
    characters and length.

    @raise HTTPParseError: It is bad.
    """
    if line.translate(None, TEXT):
        raise HTTPParseError("control character in a header line: %r" % (line[:100],))
    if len(line) + 2 > MAX_LINE:
        raise HTTPParseError("line too long")


def check_name(name: bytes) -> int:
    """
    Check a header name not seen before, and remember it in L{NAMES}.

    @param name: The name, as sent.
    @return: Its kind (L{PLAIN}, L{CONTENT_LENGTH}, ...).
    @raise HTTPParseError: It is not a token.
    """
    if not name or name.translate(None, TOKEN):
        raise HTTPParseError("invalid header name: %r" % (name[:100],))
    kind = _KINDS.get(name.lower(), PLAIN)
    if len(NAMES) < NAMES_MAX:
        NAMES[name] = kind
    return kind


def header_line(line: bytes, what: str = "header") -> tuple[bytes, bytes, int]:
    """
    Check a header (or trailer) line not seen before (control
    characters, length, a colon after a token), and remember it in
    L{LINES}.

    @param line: The line, without its CRLF.
    @param what: What the line is, for the error.
    @return: Its name, its value without surrounding spaces and tabs, and
        the name's kind (L{PLAIN}, L{CONTENT_LENGTH}, ...).
    @raise HTTPParseError: It is bad.
    """
    check_line(line)
    name, colon, value = line.partition(b":")
    if not colon:
        raise HTTPParseError("%s line without a colon: %r" % (what, line[:100]))
    kind = NAMES.get(name)
    if kind is None:
        kind = check_name(name)
    known = (name, value.strip(b" \t"), kind)
    if len(LINES) >= LINES_MAX:
        LINES.clear()
    LINES[line] = known
    return known


def keep_head(block: bytes, pairs: list[tuple[bytes, bytes]], framing: "Framing") -> None:
    """
    Remember what a whole head said, in L{HEADS} (unless it is longer
    than L{HEAD_KEPT_MAX} bytes).

    @param block: The bytes between the status line and the empty line.
    @param pairs: Its header lines' names and values.
    @param framing: The framing they gave; not to be changed from now on.
    """
    if len(block) <= HEAD_KEPT_MAX:
        if len(HEADS) >= HEADS_MAX:
            HEADS.clear()
        HEADS[block] = (tuple(pairs), framing)


def content_length(value: bytes) -> int:
    """
    The length a Content-Length value gives.

    @param value: The value, without surrounding whitespace.
    @raise HTTPParseError: It is not ASCII digits, or it is above
        L{MAX_CONTENT_LENGTH}.
    """
    if not value.isdigit():  # ASCII digits only; not empty
        raise HTTPParseError("invalid Content-Length: %r" % (value[:100],))
    if len(value) > 19 and len(value.lstrip(b"0")) > 19:
        raise HTTPParseError("Content-Length too large")
    length = int(value)
    if length > MAX_CONTENT_LENGTH:
        raise HTTPParseError("Content-Length too large")
    return length


def ends_chunked(value: bytes) -> bool:
    """
    Whether a Transfer-Encoding value's last coding is C{chunked} (several
    headers make one list: the last coding counts).

    @param value: The value, not empty, without surrounding whitespace.
    """
    return value == b"chunked" or value.rpartition(b",")[2].strip(b" \t").lower() == b"chunked"


def connection_options(value: bytes) -> tuple[bool, bool]:
    """
    What a Connection header value says of the connection.

    @param value: The value, without surrounding whitespace.
    @return: Whether it has the C{close} token, and whether it has the
        C{keep-alive} token.
    """
    lower = value.lower()
    if lower == b"close":
        return True, False
    if lower == b"keep-alive":
        return False, True
    close = keep_alive = False
    for token in lower.split(b","):
        token = token.strip(b" \t")
        if token == b"close":
            close = True
        elif token == b"keep-alive":
            keep_alive = True
    return close, keep_alive


class Framing:
    """
    What the headers of one response head said of its framing and of its
    connection, taken in header by header (L{take}).

    @ivar content_length: The Content-Length, or C{-1} without one.
    @ivar transfer_encoding: Whether there was a Transfer-Encoding header.
    @ivar chunked: Whether its last coding is C{chunked}.
    @ivar close: Whether a Connection header has the C{close} token.
    @ivar keep_alive: Whether a Connection header has the C{keep-alive}
        token.
    """

    __slots__ = ("content_length", "transfer_encoding", "chunked", "close", "keep_alive")

    def __init__(self) -> None:
        self.content_length = -1
        self.transfer_encoding = self.chunked = self.close = self.keep_alive = False

    def take(self, kind: int, value: bytes) -> None:
        """
        Take in a header that frames the body or says whether the
        connection stays.

        @param kind: L{CONTENT_LENGTH}, L{TRANSFER_ENCODING} or
            L{CONNECTION}.
        @param value: Its value, without surrounding whitespace.
        @raise HTTPParseError: It is invalid, or conflicts with another.
        """
        if kind == CONTENT_LENGTH:
            if self.transfer_encoding:
                raise HTTPParseError("Content-Length with Transfer-Encoding")
            if self.content_length >= 0:
                # Any second Content-Length is rejected, even one with the
                # same value (llhttp's strict mode does the same).
                raise HTTPParseError("duplicate Content-Length")
            self.content_length = content_length(value)
        elif kind == TRANSFER_ENCODING:
            if self.content_length >= 0:
                raise HTTPParseError("Transfer-Encoding with Content-Length")
            if not value:
                raise HTTPParseError("empty Transfer-Encoding")
            self.transfer_encoding = True
            self.chunked = ends_chunked(value)
        else:  # CONNECTION
            close, keep_alive = connection_options(value)
            if close:
                self.close = True
            if keep_alive:
                self.keep_alive = True


__all__ = ["HTTPParseError", "MAX_LINE", "MAX_CONTENT_LENGTH", "Framing", "check_line", "check_name",
           "header_line", "keep_head", "content_length", "ends_chunked", "connection_options"]
