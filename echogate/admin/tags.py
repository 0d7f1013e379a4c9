"""
The Admin API's tag listing, registered on L{echogate.admin.api.AdminAPI}'s
Klein application by L{register}, as Kong 3 serves it:

  - C{GET /tags}: every tag of every record of every entity, one row per
    tag, C{{"entity_name": "services", "entity_id": ..., "tag": ...}};
  - C{GET /tags/{tag}}: the rows of that one tag (one per record carrying
    it).

Both are paged with C{size} and C{offset} as the entity lists are
(L{echogate.admin.paging}), in the order of
L{echogate.interfaces.IStore.tagged} (by the record's id). A tag no record
can carry (text PostgreSQL cannot compare) lists nothing.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

from klein import Klein
from twisted.web.iweb import IRequest

from echogate.admin.paging import PageRequest, query_arguments
from echogate.admin.responses import json_response
from echogate.schema.fields import text_problem


async def _tag_page(admin: Any, request: IRequest, tag: str | None, path: str) -> bytes:
    """
    One page of C{/tags} (or C{/tags/{tag}} at C{path}).
    """
    arguments = query_arguments(request.uri)
    paging = PageRequest.from_query({name: arguments[name] for name in ("size", "offset")
                                     if name in arguments})
    if tag is not None and text_problem(tag) is not None:
        rows: list[dict[str, Any]] = []
        next_offset = None
    else:
        rows, next_offset = await admin._store.tagged(tag, paging.size, paging.offset)
    body: dict[str, Any] = {"data": rows}
    if next_offset is not None:
        body["offset"] = next_offset
    body["next"] = paging.next_link(path, next_offset)
    return json_response(request, body)


def register(app: Klein) -> None:
    """
    Add C{/tags} and C{/tags/{tag}} to C{app}, the L{AdminAPI}'s
    application.
    """

    @app.route("/tags", methods=["GET"], endpoint="tags_list")
    async def all_tags(admin: Any, request: IRequest) -> bytes:
        return await _tag_page(admin, request, None, "/tags")

    @app.route("/tags/<tag>", methods=["GET"], endpoint="tags_one")
    async def one_tag(admin: Any, request: IRequest, tag: str) -> bytes:
        return await _tag_page(admin, request, tag, "/tags/" + quote(tag, safe=""))
