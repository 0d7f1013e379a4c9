"""
The body size limit of a request on the proxy listener
(L{LimitedBody}, a base of L{echogate.proxy.request.GatewayRequest}):
the site's C{max_body_size} and a plugin's own cap (L{LimitedBody.limit_body}),
enforced as the body arrives without holding an oversized body; and
where a body is kept meanwhile (L{BodyFile}, L{EarlyBody},
L{DiscardedBody}) or who reads it as it arrives (L{BodySink}).
"""
from __future__ import annotations

import io
import typing
from typing import Any, Callable

from twisted.web import server


class BodyFile(typing.Protocol):
    """
    Where a request's body is kept (C{request.content}): a file in memory
    or on disk, or L{DiscardedBody} for a body over the size limit.
    """

    def write(self, data: bytes, /) -> object: ...

    def tell(self) -> int: ...

    def seek(self, offset: int, whence: int = 0, /) -> object: ...

    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


class EarlyBody(io.BytesIO):
    """
    Where the part of a body that came with its head is kept while the
    head is routed and authorised: the body's own file (or the upstream,
    for a streamed body) is chosen once the head passed.
    """


class BodySink(typing.Protocol):
    """
    Who reads a streamed body (L{echogate.proxy.request.GatewayRequest.stream_body}):
    L{echogate.proxy.uploads.StreamedBody} provides it.
    """

    def write(self, data: bytes) -> None:
        """Bytes of the body arrived."""

    def finished(self) -> None:
        """The body ended."""


class DiscardedBody:
    """
    Where a body over the size limit goes: nowhere.
    """

    def write(self, data: bytes) -> None:
        pass

    def tell(self) -> int:
        return 0

    def seek(self, *a: Any) -> None:
        pass

    def read(self, *a: Any) -> bytes:
        return b""

    def close(self) -> None:
        pass


class LimitedBody(server.Request):
    """
    A request that enforces the body size limit (C{site.max_body_size},
    0 for none, or a lower cap of its own) without holding an oversized
    body: one declared too large is never kept, and a chunked one that
    crosses the limit is answered 413 at once (L{answer_early}), or its
    connection cut once its response began.
    """

    content: BodyFile
    _too_large = False
    _received = 0
    #: Set by the resource that takes the head
    #: (L{echogate.proxy.request.GatewayRequest.head_received}): answers
    #: C{status} at once, before the body is all read, and closes.
    answer_early: Callable[[int], None] | None = None
    #: The reader of a streamed body
    #: (L{echogate.proxy.request.GatewayRequest.stream_body}).
    _upload: BodySink | None = None
    #: This request's own cap on its body (L{limit_body}); 0: none.
    _own_limit = 0
    #: The length the head declared, for the body file made once the
    #: head passed (L{echogate.proxy.request.GatewayRequest._open_content}).
    _declared: int | None = None

    @property
    def too_large(self) -> bool:
        """
        Whether the body is over the size limit (it is not kept).
        """
        return self._too_large

    def limit_body(self, size: int) -> bool:
        """
        Cap this request's body at C{size} bytes as it arrives (as
        C{client_max_body_size} does): past it, 413 and the connection
        closed (cut, with the upstream's, once the response started).

        @return: whether what was received so far is within C{size}.
        """
        if not self._own_limit or size < self._own_limit:
            self._own_limit = size
        return self._received <= size

    def _limit(self) -> int:
        site = getattr(self.channel, "site", None)
        limit: int = getattr(site, "max_body_size", 0) or 0
        own = self._own_limit
        return own if own and (not limit or own < limit) else limit

    def gotLength(self, length: int | None) -> None:
        if length == 0:
            # No body: nothing to limit. (server.Request's, inline: the
            # site's getContentFile, else an empty file in memory.)
            site = getattr(self.channel, "site", None)
            empty = getattr(site, "empty_content", None)  # (GatewaySite's getContentFile(0), without the call)
            if empty is not None:
                self.content = empty()
                return
            make = getattr(site, "getContentFile", None)
            self.content = make(0) if make is not None else io.BytesIO()
            return
        limit = self._limit()
        if limit and length is not None and length > limit:
            self._too_large = True
            self.content = DiscardedBody()
            return
        # A body follows: where it goes (a file, or the service as it
        # arrives) is decided once its head passed.
        self._declared = length
        self.content = EarlyBody()

    def handleContentChunk(self, data: bytes) -> None:
        if self._too_large:
            return
        self._received += len(data)
        limit = self._limit()
        if limit and self._received > limit:
            self._too_large = True
            self.content.close()
            self.content = DiscardedBody()
            if self.answer_early is not None and not self.startedWriting and not self.finished:
                # A chunked body that crossed the limit: answered now, the
                # rest never read.
                self.answer_early(413)
            elif self._upload is not None:
                # A streamed body past the limit once the response began:
                # the connection is cut (and the upstream's with it).
                self.loseConnection()
            return
        upload = self._upload
        if upload is not None:
            upload.write(data)
            return
        self.content.write(data)
