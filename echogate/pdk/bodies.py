"""
Request bodies of the Admin API: JSON objects, URL-encoded forms and
multipart forms, read with a size bound, for every method.

Twisted parses form bodies into C{request.args} only for C{POST}, and
mixes them with the query string; the Admin API needs the body alone, for
C{PUT} and C{PATCH} too, so it reads C{request.content} itself through
L{read_body}.

A JSON body is kept as the object it is (its values already typed); a
form body is kept as its C{(name, value)} pairs, in order, for
L{echogate.admin.forms.decode_form} to type against the entity's schema.
"""
from __future__ import annotations

import json
from typing import IO, Any
from urllib.parse import parse_qsl

import attrs
from multipart import MultipartError, PushMultipartParser, parse_options_header
from twisted.web.iweb import IRequest

from echogate.errors import GatewayError, InvalidBody, UnsupportedMediaType

#: The largest body the Admin API reads, in bytes.
MAX_BODY_SIZE = 1024 * 1024

JSON_TYPE = "application/json"
URLENCODED_TYPE = "application/x-www-form-urlencoded"
MULTIPART_TYPE = "multipart/form-data"

CANNOT_PARSE_JSON = "Cannot parse JSON body"
JSON_NOT_OBJECT = "JSON body must be an object"
CANNOT_PARSE_FORM = "Cannot parse form body"
CANNOT_PARSE_MULTIPART = "Cannot parse multipart body"


class BodyTooLarge(GatewayError):
    """
    The request body is larger than the Admin API accepts (413).
    """

    status = 413

    def __init__(self, limit: int):
        super().__init__(f"Request body larger than {limit} bytes")
        self.limit = limit


@attrs.frozen
class Body:
    """
    A parsed request body: either a JSON object or form pairs.

    @ivar json: the JSON object, or C{None} for a form body.
    @ivar pairs: the form's C{(name, value)} pairs in order, or C{None} for
        a JSON body.
    """

    json: dict[str, Any] | None = None
    pairs: tuple[tuple[str, str], ...] | None = None

    @property
    def is_form(self) -> bool:
        """
        Whether this body came from a form (its values are untyped strings).
        """
        return self.pairs is not None

    def names(self) -> frozenset[str]:
        """
        The top-level field names this body sets (C{config.x} counts as
        C{config}, C{hosts[]} as C{hosts}).
        """
        if self.json is not None:
            return frozenset(self.json)
        return frozenset(
            name.split(".", 1)[0].split("[", 1)[0] for name, _ in self.pairs or ()
        )


EMPTY = Body(json={})


def _json(data: bytes) -> Body:
    def refuse_constant(name: str) -> Any:
        raise ValueError(name)

    try:
        value = json.loads(data, parse_constant=refuse_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidBody(CANNOT_PARSE_JSON) from None
    if not isinstance(value, dict):
        raise InvalidBody(JSON_NOT_OBJECT)
    return Body(json=value)


def _urlencoded(data: bytes) -> Body:
    try:
        text = data.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False,
                          errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise InvalidBody(CANNOT_PARSE_FORM) from None
    return Body(pairs=tuple(pairs))


def _multipart(data: bytes, options: dict[str, str]) -> Body:
    boundary = options.get("boundary")
    if not boundary:
        raise InvalidBody(CANNOT_PARSE_MULTIPART)
    pairs: list[tuple[str, str]] = []
    name: str | None = None
    charset = "utf-8"
    chunks: list[bytes] = []
    try:
        with PushMultipartParser(boundary, content_length=len(data), strict=True) as parser:
            for event in parser.parse(data):
                if event is None:
                    if name:
                        pairs.append((name, b"".join(chunks).decode(charset)))
                elif isinstance(event, (bytes, bytearray)):
                    chunks.append(bytes(event))
                else:
                    name = event.name
                    charset = event.charset or "utf-8"
                    chunks = []
    except (MultipartError, UnicodeDecodeError, LookupError):
        raise InvalidBody(CANNOT_PARSE_MULTIPART) from None
    return Body(pairs=tuple(pairs))


def parse_body(content_type: str | None, data: bytes) -> Body:
    """
    Parse a request body by its C{Content-Type}.

    An empty body is an empty JSON object unless it claims to be JSON (then
    it cannot be parsed) or a form (then it has no pairs).

    @param content_type: the C{Content-Type} header, or C{None}.
    @param data: the whole body.
    @raise InvalidBody: the body does not parse, or is JSON but not an
        object.
    @raise UnsupportedMediaType: a non-empty body of any other type.
    """
    media, options = parse_options_header(content_type or "")
    if media == JSON_TYPE or (media.startswith("application/") and media.endswith("+json")):
        return _json(data)
    if media == URLENCODED_TYPE:
        return _urlencoded(data)
    if media == MULTIPART_TYPE:
        if not data:
            return Body(pairs=())
        return _multipart(data, options)
    if not data:
        return EMPTY
    raise UnsupportedMediaType()


def read_limited(content: IO[bytes] | None, limit: int) -> bytes:
    """
    Read a whole body from the start, refusing more than C{limit} bytes.

    @raise BodyTooLarge: the body is longer than C{limit}.
    """
    if content is None:
        return b""
    content.seek(0)
    data = content.read(limit + 1)
    content.seek(0)
    if len(data) > limit:
        raise BodyTooLarge(limit)
    return data


def read_body(request: IRequest, limit: int = MAX_BODY_SIZE) -> Body:
    """
    Parse the body of C{request} (its content, never its query string).

    @param limit: the largest body accepted, in bytes.
    @raise BodyTooLarge: the body is longer than C{limit}.
    @raise InvalidBody: see L{parse_body}.
    @raise UnsupportedMediaType: see L{parse_body}.
    """
    header = request.getHeader(b"content-type")
    content_type = header.decode("latin-1") if isinstance(header, bytes) else header
    data = read_limited(getattr(request, "content", None), limit)
    return parse_body(content_type, data)

