"""
The Admin API's endpoints for upstreams' targets and health, registered on
L{echogate.admin.api.AdminAPI}'s Klein application by L{register}
(C{/upstreams} and C{/upstreams/{u}} themselves are served by the generic
collection endpoints), as Kong 3 serves them:

  - C{GET|POST /upstreams/{u}/targets}, C{GET /upstreams/{u}/targets/all};
  - C{GET|PUT|PATCH|DELETE /upstreams/{u}/targets/{t}}, C{t} being the
    target's id or its C{target} (C{host:port} as stored); PUT changes the
    given fields like PATCH, and a target that does not exist is 404 for
    every method;
  - C{PUT /upstreams/{u}/targets/{t}/healthy} (C{unhealthy}), and
    C{PUT /upstreams/{u}/targets/{t}/{address}/healthy} (C{unhealthy}) for
    one address (C{ip} or C{ip:port}, port 8000 when absent) of the
    target: 204, stored as a health override (L{echogate.admin.health});
  - C{GET /upstreams/{u}/health}: the upstream's targets with their health
    as this node's L{echogate.admin.health.HealthView} sees it, and with
    C{?balancer_health=1} the balancer's health.

There is no top-level C{/targets} (Kong 3 answers 404 there too).
"""
from __future__ import annotations

from typing import Any

from klein import Klein
from twisted.internet.defer import maybeDeferred
from twisted.web.iweb import IRequest

from echogate.admin.health import OVERRIDES, health_override, with_health
from echogate.admin.paging import PageRequest, query_arguments
from echogate.admin.responses import NOT_FOUND, json_response, no_content
from echogate.entities.upstreams import format_target
from echogate.schema.fields import is_uuid

TARGETS = "targets"
UPSTREAMS = "upstreams"

_TARGETS = "/upstreams/<key>/targets"
_ONE = _TARGETS + "/<target>"


class _NoTarget(Exception):
    """
    The addressed target does not exist under the upstream.
    """


async def _find_target(admin: Any, upstream: dict[str, Any], key: str) -> dict[str, Any]:
    """
    The target of C{upstream} whose id, or C{target} (exactly as stored),
    is C{key}.

    @raise _NoTarget: there is none.
    """
    if is_uuid(key):
        record = await admin._store.get(TARGETS, key.lower())
        if record is not None and (record.get("upstream") or {}).get("id") == upstream["id"]:
            return dict(record)
        raise _NoTarget(key)
    offset = None
    while True:
        records, offset = await admin._store.page(TARGETS, 1000, offset,
                                                  where={"upstream": upstream["id"]})
        for record in records:
            if record.get("target") == key:
                return dict(record)
        if offset is None:
            raise _NoTarget(key)


def _not_found(request: IRequest) -> bytes:
    return json_response(request, NOT_FOUND, 404)


async def _set_health(admin: Any, request: IRequest, key: str, target: str,
                      address: str | None, healthy: bool) -> bytes:
    upstream = await admin._find(UPSTREAMS, key)
    try:
        record = await _find_target(admin, upstream, target)
    except _NoTarget:
        return _not_found(request)
    normalised = None
    if address is not None:
        try:
            normalised = format_target(address)
        except ValueError:
            return json_response(request, {
                "message": f"Invalid address ('{address}'); not a valid hostname or ip address"}, 400)
    override = health_override(upstream["id"], record["id"], normalised, healthy, admin._now())
    await admin._store.upsert(OVERRIDES, override)
    await admin._changed()
    return no_content(request)


def register(app: Klein) -> None:
    """
    Add the target and health endpoints to C{app}, the L{AdminAPI}'s
    application.
    """

    async def list_targets(admin: Any, request: IRequest, key: str, suffix: str) -> bytes:
        # Without Kong's weight-0 history rows, every target is "active":
        # /targets and /targets/all list the same ones.
        upstream = await admin._find(UPSTREAMS, key)
        listed: bytes = await admin._list(request, TARGETS, f"/upstreams/{upstream['id']}{suffix}",
                                          where={"upstream": upstream["id"]})
        return listed

    @app.route(_TARGETS, methods=["GET"], endpoint="targets_list")
    async def targets(admin: Any, request: IRequest, key: str) -> bytes:
        listed: bytes = await list_targets(admin, request, key, "/targets")
        return listed

    @app.route(_TARGETS + "/all", methods=["GET"], endpoint="targets_list_all")
    async def all_targets(admin: Any, request: IRequest, key: str) -> bytes:
        listed: bytes = await list_targets(admin, request, key, "/targets/all")
        return listed

    @app.route(_TARGETS, methods=["POST"], endpoint="targets_create")
    async def create_target(admin: Any, request: IRequest, key: str) -> bytes:
        upstream = await admin._find(UPSTREAMS, key)
        created: bytes = await admin._create(request, TARGETS, {"upstream": {"id": upstream["id"]}})
        return created

    @app.route(_ONE, methods=["GET"], endpoint="targets_get")
    async def get_target(admin: Any, request: IRequest, key: str, target: str) -> bytes:
        upstream = await admin._find(UPSTREAMS, key)
        try:
            return json_response(request, await _find_target(admin, upstream, target))
        except _NoTarget:
            return _not_found(request)

    @app.route(_ONE, methods=["PATCH"], endpoint="targets_patch")
    @app.route(_ONE, methods=["PUT"], endpoint="targets_put")
    async def update_target(admin: Any, request: IRequest, key: str, target: str) -> bytes:
        upstream = await admin._find(UPSTREAMS, key)
        try:
            record = await _find_target(admin, upstream, target)
        except _NoTarget:
            return _not_found(request)
        updated: bytes = await admin._update(request, TARGETS, record)
        return updated

    @app.route(_ONE, methods=["DELETE"], endpoint="targets_delete")
    async def delete_target(admin: Any, request: IRequest, key: str, target: str) -> bytes:
        upstream = await admin._find(UPSTREAMS, key)
        try:
            record = await _find_target(admin, upstream, target)
        except _NoTarget:
            return _not_found(request)
        deleted: bytes = await admin._delete(request, TARGETS, record["id"])
        return deleted

    @app.route(_ONE + "/<any(healthy, unhealthy):state>", methods=["PUT"], endpoint="targets_health")
    async def put_health(admin: Any, request: IRequest, key: str, target: str, state: str) -> bytes:
        return await _set_health(admin, request, key, target, None, state == "healthy")

    @app.route(_ONE + "/<address>/<any(healthy, unhealthy):state>", methods=["PUT"],
               endpoint="targets_address_health")
    async def put_address_health(admin: Any, request: IRequest, key: str, target: str,
                                 address: str, state: str) -> bytes:
        return await _set_health(admin, request, key, target, address, state == "healthy")

    @app.route("/upstreams/<key>/health", methods=["GET"], endpoint="upstream_health")
    async def upstream_health(admin: Any, request: IRequest, key: str) -> bytes:
        upstream = await admin._find(UPSTREAMS, key)
        args = query_arguments(request.uri)
        node_id = admin._node.node_id
        if args.get("balancer_health") == "1":
            data = await maybeDeferred(admin._health.balancer_health, upstream)
            return json_response(request, {"data": data, "next": None, "node_id": node_id})
        paging = PageRequest.from_query(args)
        records, next_offset = await admin._store.page(
            TARGETS, paging.size, paging.offset, tags=paging.tags, tags_any=paging.tags_any,
            where={"upstream": upstream["id"]})
        found = await maybeDeferred(admin._health.targets_health, upstream, records)
        body: dict[str, Any] = {"data": [with_health(r, found) for r in records]}
        if next_offset is not None:
            body["offset"] = next_offset
        body["next"] = paging.next_link(f"/upstreams/{upstream['id']}/health", next_offset)
        body["node_id"] = node_id
        return json_response(request, body)
