"""
A response head written in one piece (L{OnePieceHead}, a base of
L{echogate.proxy.request.GatewayRequest}): a head given as wire pairs
goes out with the first write, framed as Twisted frames a response,
without a L{Headers} object.
"""
from __future__ import annotations

from http import HTTPStatus

from twisted.web import server
from twisted.web.http import NO_BODY_CODES, toChunk
from twisted.web.http_headers import Headers

from echogate.pdk.rawheaders import DIRECT

_PHRASES = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}
#: A header line of a C{(name, value)} pair, but for its CRLF.
_PAIR = b": ".join
#: C{(version, code, reason phrase)} to the status line, with its CRLF.
_STATUS_LINES: dict[tuple[bytes, int, bytes], bytes] = {}


def _status_line(version: bytes, code: int, message: bytes) -> bytes:
    """
    The status line of C{code} with C{message} in C{version}, remembered
    in L{_STATUS_LINES} (which stops growing at 1,024 lines).
    """
    line = b"%s %d %s\r\n" % (version, code, message)
    if len(_STATUS_LINES) < 1024:
        _STATUS_LINES[version, code, message] = line
    return line


def reason_phrase(code: int) -> bytes:
    """
    The reason phrase of status C{code} (RFC 9110's, or the IANA
    registry's as Python knows it), C{Unknown Status} for others.
    """
    return _PHRASES.get(code, b"Unknown Status")


class OnePieceHead(server.Request):
    """
    A request whose response head may be given as wire pairs
    (L{respond}) and is then written with the body's first bytes in one
    piece; its reason phrases are those of every registered status.
    """

    #: The head given as wire pairs (L{respond}) until it is written.
    _head: list[tuple[bytes, bytes]] | None = None
    #: Once the head was written in one piece, C{(pairs, count, size)}: the
    #: list it was given as, how many lines it had and their size on the
    #: wire (L{echogate.pdk.context.PluginContext.sent_lines_size} reads it).
    sent_head: tuple[list[tuple[bytes, bytes]], int, int] | None = None
    #: Whether the request came on an HTTP/2 stream (its head is fields,
    #: not lines).
    _h2 = False

    def setResponseCode(self, code: int, message: bytes | None = None) -> None:
        """
        Twisted's, with the reason phrase of every registered status code
        (Twisted's table lacks several, such as 422 and 451, and answers
        them C{Unknown Status}), also for a service's own status.
        """
        server.Request.setResponseCode(self, code, message if message is not None else reason_phrase(code))

    def respond(self, status: int | None, head: Headers | list[tuple[bytes, bytes]]) -> None:
        """
        Answer with C{status} and the headers C{head}, keeping what Twisted
        set before the response (C{Connection: close} when the client asked
        for it) unless C{head} has it.

        C{head} as header lines (wire pairs, names and values ready to
        send) is written with the first L{write} (or L{finish}) in one
        piece, without a L{Headers} object, framed as Twisted frames a
        response: chunked for HTTP/1.1 when it has no Content-Length, no
        body for C{HEAD}, 204 and 304. A L{Headers} is written by Twisted.

        @raise TypeError: when C{status} is not an C{int} (C{None}: no
            status was set).
        """
        # (setResponseCode's work, inline: this runs for every response)
        if not isinstance(status, int):
            raise TypeError(f"HTTP response code must be int, not {type(status).__name__}")
        self.code = status
        self.code_message = _PHRASES.get(status, b"Unknown Status")
        if isinstance(head, Headers):
            for name, values in self.responseHeaders.getAllRawHeaders():
                if not head.hasHeader(name):
                    head.setRawHeaders(name, values)
            self.responseHeaders = head
        else:
            self._head = head

    def write(self, data: bytes) -> None:
        head = self._head
        if head is None:
            server.Request.write(self, data)
            return
        self._head = None
        if self.finished or self._disconnected or self.lastModified is not None or self.etag is not None \
                or self.cookies or self._encoder or self._inFakeHead or self._h2:
            # Twisted's way: it raises, ignores the write, or adds headers
            # (and an HTTP/2 stream takes its head as fields).
            for name, value in head:
                self.responseHeaders.addRawHeader(name, value)
            server.Request.write(self, data)
            return
        self.startedWriting = 1
        code = self.code
        proto = self.clientproto
        # Names and values hold no line break (they come from a parser, or
        # through HeaderEditor, which cleans them), so a line is found by
        # searching the block for a line break and its name. (A join per
        # line: a format per line costs more; find, not "in", which first
        # tries the needle as an int.)
        lines = b"\r\n".join(map(_PAIR, head))
        lowered = None
        # (upstream_head puts the service's Content-Length last, and spells
        # it so: a plugin may have added lines after it)
        framed = bool(head) and (head[-1][0] == b"Content-Length" or lines.find(b"\nContent-Length: ") != -1
                                 or lines.startswith(b"Content-Length: "))
        if not framed:
            lowered = b"\n" + lines.lower()
            framed = lowered.find(b"\ncontent-length:") != -1
        extra = b""
        # What Twisted set before the response (Connection: close when the
        # client asked for it), unless the lines have it already.
        responseHeaders = self.responseHeaders
        if not DIRECT or type(responseHeaders) is not Headers or responseHeaders._rawHeaders:
            if lowered is None:
                lowered = b"\n" + lines.lower()
            for name, values in responseHeaders.getAllRawHeaders():
                if lowered.find(b"\n" + name.lower() + b":") == -1:
                    extra += b"".join([b"%s: %s\r\n" % (name, value) for value in values])
        bodiless = self.method == b"HEAD" or code in NO_BODY_CODES
        if not framed and not bodiless and proto == b"HTTP/1.1":
            extra += b"Transfer-Encoding: chunked\r\n"
            self.chunked = 1
        message = self.code_message
        status = _STATUS_LINES.get((proto, code, message))
        if status is None:
            status = _status_line(proto, code, message)
        if lines:
            lines += b"\r\n"
        # (lines_size of the pairs, for the log phase: the join's size)
        self.sent_head = (head, len(head), len(lines))
        channel = self.channel
        if bodiless:
            channel.write(b"".join((status, lines, extra, b"\r\n")))
            self.write = lambda data: None  # type: ignore[method-assign]  # as Twisted does
            return
        self.sentLength += len(data)
        if self.chunked and data:
            channel.writeSequence((status, lines, extra, b"\r\n", *toChunk(data)))
        else:
            channel.write(b"".join((status, lines, extra, b"\r\n", data)))
