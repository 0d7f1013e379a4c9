"""
Lists in the Admin API: the C{size}, C{offset} and C{tags} query
arguments, their errors, and the C{next} link of a page.

C{?tags=a,b} lists records carrying every one of the tags, C{?tags=a/b}
records carrying any of them; the two separators cannot be mixed.
"""
from __future__ import annotations

import re
from typing import Any, Mapping
from urllib.parse import parse_qs, quote, urlsplit

import attrs

from echogate.errors import GatewayError

DEFAULT_SIZE = 100
MAX_SIZE = 1000

# A tag is printable ASCII but "," and "/", or any non-ASCII character.
_TAG = r"[\x20-\x2b\x2d\x2e\x30-\x7e\u0080-\U0010ffff]+"
_TAGS_ALL = re.compile(rf"^{_TAG}(?:,{_TAG})*\Z")
_TAGS_ANY = re.compile(rf"^{_TAG}(?:/{_TAG})+\Z")


class InvalidSize(GatewayError):
    """
    The C{size} query argument is not an integer from 1 to 1000 (400, code 9).
    """

    status = 400
    code = 9
    name = "invalid size"


class InvalidOptions(GatewayError):
    """
    A query option such as C{tags} cannot be understood (400, code 11); Kong
    names the options in C{options} rather than C{fields}.
    """

    status = 400
    code = 11
    name = "invalid options"

    def __init__(self, options: Mapping[str, str]):
        parts = "; ".join(f"{key}: {value}" for key, value in options.items())
        super().__init__(f"invalid option ({parts})")
        self.options = dict(options)

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "name": self.name, "message": self.message,
                "options": self.options}


def query_arguments(uri: bytes) -> dict[str, str]:
    """
    The query string of C{uri} (never the body), first value of each name.
    """
    query = urlsplit(uri).query.decode("utf-8", "replace")
    return {name: values[0] for name, values in parse_qs(query, keep_blank_values=True).items()}


def _size(text: str | None) -> int:
    if text is None:
        return DEFAULT_SIZE
    try:
        number = float(text)
    except ValueError:
        raise InvalidSize("size must be a number") from None
    if not number.is_integer() or not 1 <= number <= MAX_SIZE:
        raise InvalidSize(f"size must be an integer between 1 and {MAX_SIZE}")
    return int(number)


def _tags(text: str | None) -> tuple[tuple[str, ...] | None, bool]:
    if text is None:
        return None, False
    if _TAGS_ALL.match(text):
        return tuple(text.split(",")), False
    if _TAGS_ANY.match(text):
        return tuple(text.split("/")), True
    raise InvalidOptions({"tags": "invalid filter syntax"})


@attrs.frozen
class PageRequest:
    """
    What one list request asks for.

    @ivar size: records per page, 1 to 1000.
    @ivar offset: the opaque offset to continue after, or C{None}.
    @ivar tags: the tags to filter by, or C{None}.
    @ivar tags_any: whether any (rather than every) tag is enough.
    @ivar carried: the query arguments the C{next} link repeats
        (C{size} and C{tags} as given).
    """

    size: int = DEFAULT_SIZE
    offset: str | None = None
    tags: tuple[str, ...] | None = None
    tags_any: bool = False
    carried: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_query(cls, args: Mapping[str, str]) -> PageRequest:
        """
        Read C{size}, C{offset} and C{tags} from query arguments.

        @raise InvalidSize: C{size} is not an integer from 1 to 1000.
        @raise InvalidOptions: C{tags} mixes C{,} and C{/} or has an
            empty tag.
        """
        size = _size(args.get("size"))
        tags, tags_any = _tags(args.get("tags"))
        offset = args.get("offset") or None
        carried = tuple((name, args[name]) for name in ("size", "tags") if name in args)
        return cls(size=size, offset=offset, tags=tags, tags_any=tags_any, carried=carried)

    def next_link(self, path: str, next_offset: str | None) -> str | None:
        """
        The link to the page after this one, or C{None} on the last page.

        @param path: the list's path, e.g. C{/services}.
        """
        if next_offset is None:
            return None
        query = "&".join(
            f"{name}={quote(value, safe='')}"
            for name, value in (("offset", next_offset),) + self.carried
        )
        return f"{path}?{query}"
