"""
Page offsets: the opaque C{offset} a store hands out with a page (the
last id of the page, in URL-safe base64), and L{InvalidOffset} for one it
did not.
"""
from __future__ import annotations

import base64
import binascii

from echogate.errors import GatewayError
from echogate.store.pgtables import parses_as_uuid

__all__ = ["InvalidOffset", "encode_offset", "decode_offset"]


class InvalidOffset(GatewayError):
    """
    A page C{offset} that this store did not hand out (400, Kong's code 7).
    """

    status = 400
    code = 7
    name = "invalid offset"

    def __init__(self, offset: str):
        super().__init__(f"'{offset}' is not a valid offset: bad base64 encoding")


def encode_offset(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode("ascii")).decode("ascii").rstrip("=")


def decode_offset(offset: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(offset + "=" * (-len(offset) % 4))
        last_id = raw.decode("ascii")
    except (binascii.Error, ValueError):
        raise InvalidOffset(offset) from None
    if not parses_as_uuid(last_id):
        raise InvalidOffset(offset)
    return last_id
