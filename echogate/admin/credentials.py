"""
The Admin API's endpoints for consumers' credentials, registered on
L{echogate.admin.api.AdminAPI}'s Klein application by L{register}:

  - C{GET|POST /consumers/{c}/key-auth} (and C{basic-auth}, C{jwt},
    C{acls}), and C{GET|PUT|PATCH|DELETE /consumers/{c}/key-auth/{k}},
    C{k} being the credential's id or endpoint key (a key-auth or jwt
    C{key}, a basic-auth C{username}, an acl's C{group});
  - C{GET|POST /key-auths} (and C{/basic-auths}, C{/jwts}, C{/acls}),
    C{GET|PUT|PATCH|DELETE /key-auths/{k}} (an acl by id only), and
    C{GET /key-auths/{k}/consumer}.

Writes go through the entity schemas (L{echogate.entities.writes}) like every
entity, with Kong's on-write steps from L{echogate.entities.credentials}: a key or
jwt secret not given is generated, and a basic-auth password given is
stored (and returned) only as its hash.

The handlers are plain functions that Klein calls with the L{AdminAPI}
instance first; they use its shared plumbing (body reading, lists,
change notification).
"""
from __future__ import annotations

from typing import Any, Mapping

from klein import Klein
from twisted.web.iweb import IRequest

from echogate.admin.responses import NOT_FOUND, json_response, no_content
from echogate.entities import credentials, writes
from echogate.errors import SchemaViolation
from echogate.pdk.entities import PluginEntity
from echogate.schema.fields import is_uuid

_BY_NESTED = {d.nested: d for d in credentials.DECLARED}
_BY_TOP = {d.endpoint: d for d in credentials.DECLARED}

_NESTED = ("/consumers/<key>/<any(" + ", ".join(f'"{d.nested}"' for d in credentials.DECLARED)
           + "):kind>")
_TOP = "/<any(" + ", ".join(f'"{d.endpoint}"' for d in credentials.DECLARED) + "):collection>"

#: The parents' fields a nested body may name them by, besides the id.
_PARENT_KEYS = {"consumers": ("username", "custom_id"), "services": ("name",), "routes": ("name",)}


def _field(declaration: PluginEntity) -> str:
    return declaration.parent_field or ""


async def _by_parent_key(admin: Any, declaration: PluginEntity, parent_id: str,
                         value: str) -> dict[str, Any] | None:
    offset = None
    while True:
        records, offset = await admin._store.page(declaration.name, 1000, offset,
                                                  where={_field(declaration): parent_id})
        for record in records:
            if record.get(declaration.endpoint_key) == value:
                found: dict[str, Any] = record
                return found
        if offset is None:
            return None


async def _lookup(admin: Any, declaration: PluginEntity, key: str,
                  parent_id: str | None = None) -> dict[str, Any] | None:
    """
    The record whose id or endpoint key is C{key} (a key unique only per
    parent, such as an acl's group, only under its parent), or C{None}.
    """
    if declaration.endpoint_key in declaration.unique_per_parent and not is_uuid(key):
        if parent_id is None:
            return None
        return await _by_parent_key(admin, declaration, parent_id, key)
    record: dict[str, Any] | None = await admin._store.get(declaration.name, key)
    return record


def _owner_id(record: Mapping[str, Any], field: str) -> str | None:
    reference = record.get(field)
    return reference.get("id") if isinstance(reference, Mapping) else None


async def _resolve_parent(admin: Any, declaration: PluginEntity, fields: dict[str, Any]) -> None:
    """
    Accept the parent given by an endpoint key (a consumer's
    C{{"username": "alice"}}, a service's C{{"name": "s"}}) as well as by
    id; anything else is left for validation.
    """
    if declaration.parent is None:
        return
    value = fields.get(_field(declaration))
    if not isinstance(value, dict) or "id" in value or len(value) != 1:
        return
    ((field, key),) = value.items()
    if field not in _PARENT_KEYS[declaration.parent] or not isinstance(key, str):
        return
    found = await admin._store.get(declaration.parent, key)
    if found is not None and found.get(field) == key:
        fields[_field(declaration)] = {"id": found["id"]}


def _not_found(request: IRequest) -> bytes:
    return json_response(request, NOT_FOUND, 404)


def _owned(declaration: PluginEntity, fields: dict[str, Any], parent_id: str | None) -> None:
    if parent_id is not None:
        fields[_field(declaration)] = {"id": parent_id}


async def _create(admin: Any, request: IRequest, declaration: PluginEntity,
                  parent_id: str | None) -> bytes:
    entity = declaration.name
    fields = admin._fields(entity, request)
    given = set(fields)
    _owned(declaration, fields, parent_id)
    if parent_id is None:
        await _resolve_parent(admin, declaration, fields)
    credentials.fill_generated(entity, fields, generated=declaration.generated)
    record = writes.prepare_insert(entity, fields, plugins=admin._plugins, now=admin._now(),
                                   new_id=admin._new_id())
    stored = await admin._store.insert(entity, credentials.on_write(entity, record, given))
    await admin._changed()
    return json_response(request, stored, 201)


async def _replace(admin: Any, request: IRequest, declaration: PluginEntity, key: str,
                   parent_id: str | None) -> bytes:
    entity = declaration.name
    existing = await _lookup(admin, declaration, key, parent_id)
    if existing is not None and parent_id is not None and _owner_id(existing, _field(declaration)) != parent_id:
        # Another parent's record: not found under this one (a PUT must
        # not move it here).
        return _not_found(request)
    fields = admin._fields(entity, request, existing)
    given = set(fields)
    if is_uuid(key):
        key = key.lower()
        if existing is not None and existing["id"] != key:
            existing = None
        fields["id"] = key
        new_id = key
    else:
        if declaration.endpoint_key is None:
            raise SchemaViolation({"id": "expected a valid UUID"})
        if declaration.endpoint_key in declaration.unique_per_parent and parent_id is None:
            return _not_found(request)
        fields[declaration.endpoint_key] = key
        new_id = admin._new_id()
    _owned(declaration, fields, parent_id)
    if parent_id is None:
        await _resolve_parent(admin, declaration, fields)
    credentials.fill_generated(entity, fields, generated=declaration.generated)
    record = writes.prepare_replace(entity, fields, existing=existing, plugins=admin._plugins,
                                    now=admin._now(), new_id=new_id)
    stored = await admin._store.upsert(entity, credentials.on_write(entity, record, given))
    await admin._changed()
    return json_response(request, stored)


async def _update(admin: Any, request: IRequest, declaration: PluginEntity,
                  existing: Mapping[str, Any], parent_id: str | None) -> bytes:
    entity = declaration.name
    fields = admin._fields(entity, request, existing)
    given = set(fields)
    _owned(declaration, fields, parent_id)
    if parent_id is None:
        await _resolve_parent(admin, declaration, fields)
    record = writes.prepare_update(entity, existing, fields, plugins=admin._plugins, now=admin._now())
    stored = await admin._store.update(entity, credentials.on_write(entity, record, given))
    await admin._changed()
    return json_response(request, stored)


async def _delete(admin: Any, request: IRequest, record: Mapping[str, Any] | None,
                  declaration: PluginEntity) -> bytes:
    if record is not None and await admin._store.delete(declaration.name, record["id"]):
        await admin._changed()
    return no_content(request)


def register(app: Klein) -> None:
    """
    Add the credential endpoints to C{app}, the L{AdminAPI}'s application.
    """

    # -- under a consumer ---------------------------------------------------

    @app.route(_NESTED, methods=["GET"], endpoint="credentials_list_nested")
    async def list_nested(admin: Any, request: IRequest, key: str, kind: str) -> bytes:
        owner = await admin._find("consumers", key)
        entity = _BY_NESTED[kind].name
        body: bytes = await admin._list(request, entity, f"/consumers/{owner['id']}/{kind}",
                                        where={"consumer": owner["id"]})
        return body

    @app.route(_NESTED, methods=["POST"], endpoint="credentials_create_nested")
    async def create_nested(admin: Any, request: IRequest, key: str, kind: str) -> bytes:
        owner = await admin._find("consumers", key)
        return await _create(admin, request, _BY_NESTED[kind], owner["id"])

    async def owned(admin: Any, key: str, kind: str, child: str) -> tuple[dict[str, Any], Any]:
        owner = await admin._find("consumers", key)
        record = await _lookup(admin, _BY_NESTED[kind], child, owner["id"])
        return owner, record

    @app.route(_NESTED + "/<child>", methods=["GET"], endpoint="credentials_get_nested")
    async def get_nested(admin: Any, request: IRequest, key: str, kind: str, child: str) -> bytes:
        owner, record = await owned(admin, key, kind, child)
        if record is None or _owner_id(record, "consumer") != owner["id"]:
            return _not_found(request)
        return json_response(request, record)

    @app.route(_NESTED + "/<child>", methods=["PUT"], endpoint="credentials_put_nested")
    async def put_nested(admin: Any, request: IRequest, key: str, kind: str, child: str) -> bytes:
        owner = await admin._find("consumers", key)
        return await _replace(admin, request, _BY_NESTED[kind], child, owner["id"])

    @app.route(_NESTED + "/<child>", methods=["PATCH"], endpoint="credentials_patch_nested")
    async def patch_nested(admin: Any, request: IRequest, key: str, kind: str, child: str) -> bytes:
        owner, record = await owned(admin, key, kind, child)
        if record is None or _owner_id(record, "consumer") != owner["id"]:
            return _not_found(request)
        return await _update(admin, request, _BY_NESTED[kind], record, owner["id"])

    @app.route(_NESTED + "/<child>", methods=["DELETE"], endpoint="credentials_delete_nested")
    async def delete_nested(admin: Any, request: IRequest, key: str, kind: str, child: str) -> bytes:
        owner, record = await owned(admin, key, kind, child)
        if record is None or _owner_id(record, "consumer") != owner["id"]:
            # Kong: no such credential under this consumer is 404 (not
            # the 204 of a top-level DELETE).
            return _not_found(request)
        return await _delete(admin, request, record, _BY_NESTED[kind])

    # -- top level ------------------------------------------------------------

    @app.route(_TOP, methods=["GET"], endpoint="credentials_list")
    async def list_all(admin: Any, request: IRequest, collection: str) -> bytes:
        body: bytes = await admin._list(request, _BY_TOP[collection].name, f"/{collection}")
        return body

    @app.route(_TOP, methods=["POST"], endpoint="credentials_create")
    async def create(admin: Any, request: IRequest, collection: str) -> bytes:
        return await _create(admin, request, _BY_TOP[collection], None)

    @app.route(_TOP + "/<key>", methods=["GET"], endpoint="credentials_get")
    async def get(admin: Any, request: IRequest, collection: str, key: str) -> bytes:
        record = await _lookup(admin, _BY_TOP[collection], key)
        return _not_found(request) if record is None else json_response(request, record)

    @app.route(_TOP + "/<key>", methods=["PUT"], endpoint="credentials_put")
    async def put(admin: Any, request: IRequest, collection: str, key: str) -> bytes:
        return await _replace(admin, request, _BY_TOP[collection], key, None)

    @app.route(_TOP + "/<key>", methods=["PATCH"], endpoint="credentials_patch")
    async def patch(admin: Any, request: IRequest, collection: str, key: str) -> bytes:
        record = await _lookup(admin, _BY_TOP[collection], key)
        if record is None:
            return _not_found(request)
        return await _update(admin, request, _BY_TOP[collection], record, None)

    @app.route(_TOP + "/<key>", methods=["DELETE"], endpoint="credentials_delete")
    async def delete(admin: Any, request: IRequest, collection: str, key: str) -> bytes:
        record = await _lookup(admin, _BY_TOP[collection], key)
        return await _delete(admin, request, record, _BY_TOP[collection])

    @app.route(_TOP + "/<key>/consumer", methods=["GET"], endpoint="credentials_consumer")
    async def consumer(admin: Any, request: IRequest, collection: str, key: str) -> bytes:
        record = await _lookup(admin, _BY_TOP[collection], key)
        if record is None:
            return _not_found(request)
        return json_response(request, await admin._find("consumers", _owner_id(record, "consumer")))
