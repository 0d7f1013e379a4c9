"""
The Admin API's endpoints for the entities plugins declare
(L{echogate.pdk.entities.PluginEntity}), registered on
L{echogate.admin.api.AdminAPI}'s Klein application by L{register}, in the
shapes of Kong's (and of the bundled credentials', whose handlers in
L{echogate.admin.credentials} these share):

  - C{GET|POST /{endpoint}}, C{GET|PUT|PATCH|DELETE /{endpoint}/{id or key}};
  - for an entity with a parent, C{GET|POST /{parent}/{id or key}/{nested}}
    and C{GET|PUT|PATCH|DELETE /{parent}/{p}/{nested}/{id or key}} (a
    record of another parent is not found there), and
    C{GET /{endpoint}/{k}/{parent field}}: the parent.

Lists are paged (C{size}, C{offset}) and filtered by C{tags} as every
list is. Which endpoints exist depends on the plugins the node loads, so
the rules match any name (L{EntityEndpoint}, tried after every other rule)
and the handlers answer 404 for a name no loaded plugin declares.
"""
from __future__ import annotations

from typing import Any

from klein import Klein
from twisted.web.iweb import IRequest
from werkzeug.routing import BaseConverter

from echogate.admin import credentials as shared
from echogate.admin.responses import json_response
from echogate.pdk.entities import PARENTS, PluginEntity

__all__ = ["EntityEndpoint", "register"]


class EntityEndpoint(BaseConverter):
    """
    A path segment naming a plugin entity's collection: any segment, tried
    after the core's rules (a heavier weight than C{any(...)} and plain
    variables), so that it never shadows them.
    """

    weight = 150


def _top(admin: Any, endpoint: str) -> PluginEntity:
    found = admin._entity_endpoints.get("/" + endpoint)
    if found is None or found.table is not None:
        # The bundled credentials are served by their own rules.
        raise admin.NotFound(endpoint)
    declaration: PluginEntity = found
    return declaration


def _nested(admin: Any, parent: str, kind: str) -> PluginEntity:
    found = admin._entity_endpoints.get(f"{parent}/{kind}")
    if found is None or found.table is not None:
        raise admin.NotFound(kind)
    declaration: PluginEntity = found
    return declaration


def register(app: Klein) -> None:
    """
    Add the plugin entities' endpoints to C{app}, the L{AdminAPI}'s application.
    """
    app.url_map.converters["plugin_entity"] = EntityEndpoint
    parents = "any(" + ", ".join(PARENTS) + ")"
    nested = f"/<{parents}:parent>/<key>/<plugin_entity:kind>"
    top = "/<plugin_entity:collection>"

    @app.route(nested, methods=["GET"], endpoint="plugin_entities_list_nested")
    async def list_nested(admin: Any, request: IRequest, parent: str, key: str, kind: str) -> bytes:
        declaration = _nested(admin, parent, kind)
        owner = await admin._find(parent, key)
        body: bytes = await admin._list(request, declaration.name, f"/{parent}/{owner['id']}/{kind}",
                                        where={declaration.parent_field: owner["id"]})
        return body

    @app.route(nested, methods=["POST"], endpoint="plugin_entities_create_nested")
    async def create_nested(admin: Any, request: IRequest, parent: str, key: str, kind: str) -> bytes:
        declaration = _nested(admin, parent, kind)
        owner = await admin._find(parent, key)
        return await shared._create(admin, request, declaration, owner["id"])

    async def owned(admin: Any, parent: str, key: str, kind: str, child: str
                    ) -> tuple[PluginEntity, dict[str, Any], dict[str, Any]]:
        declaration = _nested(admin, parent, kind)
        owner = await admin._find(parent, key)
        record = await shared._lookup(admin, declaration, child, owner["id"])
        if record is None or shared._owner_id(record, declaration.parent_field or "") != owner["id"]:
            raise admin.NotFound(child)
        return declaration, owner, record

    @app.route(nested + "/<child>", methods=["GET"], endpoint="plugin_entities_get_nested")
    async def get_nested(admin: Any, request: IRequest, parent: str, key: str, kind: str,
                         child: str) -> bytes:
        _, _, record = await owned(admin, parent, key, kind, child)
        return json_response(request, record)

    @app.route(nested + "/<child>", methods=["PUT"], endpoint="plugin_entities_put_nested")
    async def put_nested(admin: Any, request: IRequest, parent: str, key: str, kind: str,
                         child: str) -> bytes:
        declaration = _nested(admin, parent, kind)
        owner = await admin._find(parent, key)
        return await shared._replace(admin, request, declaration, child, owner["id"])

    @app.route(nested + "/<child>", methods=["PATCH"], endpoint="plugin_entities_patch_nested")
    async def patch_nested(admin: Any, request: IRequest, parent: str, key: str, kind: str,
                           child: str) -> bytes:
        declaration, owner, record = await owned(admin, parent, key, kind, child)
        return await shared._update(admin, request, declaration, record, owner["id"])

    @app.route(nested + "/<child>", methods=["DELETE"], endpoint="plugin_entities_delete_nested")
    async def delete_nested(admin: Any, request: IRequest, parent: str, key: str, kind: str,
                            child: str) -> bytes:
        declaration, _, record = await owned(admin, parent, key, kind, child)
        return await shared._delete(admin, request, record, declaration)

    @app.route(top, methods=["GET"], endpoint="plugin_entities_list")
    async def list_all(admin: Any, request: IRequest, collection: str) -> bytes:
        declaration = _top(admin, collection)
        body: bytes = await admin._list(request, declaration.name, f"/{collection}")
        return body

    @app.route(top, methods=["POST"], endpoint="plugin_entities_create")
    async def create(admin: Any, request: IRequest, collection: str) -> bytes:
        return await shared._create(admin, request, _top(admin, collection), None)

    @app.route(top + "/<key>", methods=["GET"], endpoint="plugin_entities_get")
    async def get(admin: Any, request: IRequest, collection: str, key: str) -> bytes:
        declaration = _top(admin, collection)
        record = await shared._lookup(admin, declaration, key)
        return shared._not_found(request) if record is None else json_response(request, record)

    @app.route(top + "/<key>", methods=["PUT"], endpoint="plugin_entities_put")
    async def put(admin: Any, request: IRequest, collection: str, key: str) -> bytes:
        return await shared._replace(admin, request, _top(admin, collection), key, None)

    @app.route(top + "/<key>", methods=["PATCH"], endpoint="plugin_entities_patch")
    async def patch(admin: Any, request: IRequest, collection: str, key: str) -> bytes:
        declaration = _top(admin, collection)
        record = await shared._lookup(admin, declaration, key)
        if record is None:
            return shared._not_found(request)
        return await shared._update(admin, request, declaration, record, None)

    @app.route(top + "/<key>", methods=["DELETE"], endpoint="plugin_entities_delete")
    async def delete(admin: Any, request: IRequest, collection: str, key: str) -> bytes:
        declaration = _top(admin, collection)
        record = await shared._lookup(admin, declaration, key)
        return await shared._delete(admin, request, record, declaration)

    @app.route(top + "/<key>/<any(consumer, service, route):field>", methods=["GET"],
               endpoint="plugin_entities_parent")
    async def parent(admin: Any, request: IRequest, collection: str, key: str, field: str) -> bytes:
        declaration = _top(admin, collection)
        if declaration.parent_field != field:
            raise admin.NotFound(field)
        record = await shared._lookup(admin, declaration, key)
        if record is None:
            return shared._not_found(request)
        return json_response(request, await admin._find(declaration.parent or "",
                                                         shared._owner_id(record, field) or ""))
