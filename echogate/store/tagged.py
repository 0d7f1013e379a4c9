"""
Listing tags across entities (L{echogate.interfaces.IStore.tagged}, the
Admin API's C{/tags}): what both stores share, the order of the rows and
the opaque offset of a page.

A row is one tag of one record, C{{"entity_name": ..., "entity_id": ...,
"tag": ...}}, as Kong's C{/tags} lists them. Rows are ordered by the
record's id, then its table's name, then the tag's position in the
record's C{tags} (from 1). The offset of the next page names the last row
of a page by those three, as URL-safe base64 of a JSON array, so it is
not mistaken for the offset of an entity list (the base64 of a bare id).
"""
from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from echogate.store.offsets import InvalidOffset
from echogate.store.pgtables import CANONICAL_UUID

__all__ = ["Position", "encode_tag_offset", "decode_tag_offset", "tag_row"]

#: Where a row is in the order of rows: (entity id, table name, position
#: of the tag in the record's tags, from 1).
Position = tuple[str, str, int]


def tag_row(entity_id: str, entity_name: str, tag: str) -> dict[str, Any]:
    """
    One row of C{/tags}, in Kong's shape.
    """
    return {"entity_name": entity_name, "entity_id": entity_id, "tag": tag}


def encode_tag_offset(last: Position) -> str:
    """
    The offset of the page after the row at C{last}.
    """
    text = json.dumps(list(last), separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode("ascii")).decode("ascii").rstrip("=")


def decode_tag_offset(offset: str) -> Position:
    """
    The position an offset made by L{encode_tag_offset} names.

    @raise InvalidOffset: C{offset} was not made by L{encode_tag_offset}.
    """
    try:
        raw = base64.urlsafe_b64decode(offset + "=" * (-len(offset) % 4))
        decoded = json.loads(raw.decode("ascii"))
    except (binascii.Error, ValueError):
        raise InvalidOffset(offset) from None
    if not (isinstance(decoded, list) and len(decoded) == 3):
        raise InvalidOffset(offset)
    entity_id, entity_name, ordinality = decoded
    if not (isinstance(entity_id, str) and CANONICAL_UUID.match(entity_id)
            and isinstance(entity_name, str)
            and type(ordinality) is int and ordinality >= 1):
        raise InvalidOffset(offset)
    return entity_id.lower(), entity_name, ordinality
