"""
The Admin API: a Klein application serving Kong-shaped JSON for services,
routes, consumers, plugins and upstreams, plus the node's information and
status. Consumers' credentials are served by L{echogate.admin.credentials},
upstreams' targets and health by L{echogate.admin.upstreams}, certificates
and CA certificates by L{echogate.admin.certificates} (C{/snis} here).

Every write validates first (L{echogate.entities.writes}), stores in one call of
the L{IStore} (one transaction), and then awaits C{on_change} so that the
gateway serves the change from its next request.
"""
from __future__ import annotations

import re
import uuid
from typing import Any, Callable, Mapping, Sequence

import attrs
from klein import Klein
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource

from echogate.admin import forms
from echogate.admin.guard import AdminGuard
from echogate.admin.health import HealthchecksOff, HealthView
from echogate.admin.paging import PageRequest, query_arguments
from echogate.admin.responses import (
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    error_response,
    json_response,
    no_content,
)
from echogate.entities import plugin_entities, writes
from echogate.entities import schemas as entities
from echogate.errors import SchemaViolation
from echogate.interfaces import IGatewayPlugin, IStore
from echogate.pdk.bodies import MAX_BODY_SIZE, Body, read_body
from echogate.schema.fields import text_problem

TAGLINE = "Welcome to echogate"

#: The collections, in the order Kong documents them.
COLLECTIONS = ("services", "routes", "consumers", "plugins", "upstreams", "snis")

#: (parent collection, child collection) -> the child's foreign key field.
NESTED: Mapping[tuple[str, str], str] = {
    ("services", "routes"): "service",
    ("services", "plugins"): "service",
    ("routes", "plugins"): "route",
    ("consumers", "plugins"): "consumer",
}

#: child collection -> foreign key field -> referenced collection.
FOREIGN_KEYS: Mapping[str, Mapping[str, str]] = {
    "routes": {"service": "services"},
    "plugins": {"service": "services", "route": "routes", "consumer": "consumers"},
    "targets": {"upstream": "upstreams"},
}

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
_ANY_COLLECTION = "any(" + ", ".join(COLLECTIONS) + ")"

_log = Logger(namespace="echogate.admin")


def is_uuid(key: str) -> bool:
    """
    Whether C{key} is written as a UUID (and so names an id, not a name).
    """
    return _UUID.match(key) is not None


class NotFoundError(Exception):
    """
    The addressed entity (or its parent) does not exist: 404
    C{{"message": "Not found"}}, as Kong answers for paths.
    """


@attrs.frozen
class NodeInfo:
    """
    What C{GET /} tells about this node.

    @ivar node_id: this node's id.
    @ivar hostname: the host it runs on.
    @ivar version: echogate's version.
    @ivar configuration: the node's settings, secrets already removed.
    """

    node_id: str
    hostname: str
    version: str
    configuration: Mapping[str, Any]


def _new_uuid() -> str:
    return str(uuid.uuid4())


class _Lookups:
    """
    The store, except that looking up a key no record can have (text with
    a NUL or a lone surrogate, which PostgreSQL cannot even compare) finds
    nothing instead of failing the request.
    """

    def __init__(self, store: IStore):
        self._wrapped = store

    def get(self, entity: str, key: str) -> Any:
        if isinstance(key, str) and text_problem(key) is not None:
            return succeed(None)
        return self._wrapped.get(entity, key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)


class AdminAPI:
    """
    The Admin API application; serve L{AdminAPI.resource}.

    @param store: where entities live.
    @param plugins: the enabled plugins, by name.
    @param clock: the time source (C{created_at}, status timeouts).
    @param node: what C{GET /} says about this node.
    @param on_change: called (and awaited) after every successful write.
    @param status: returns the server's connection and request counters
        for C{GET /status}.
    @param ready: returns why the node should not get traffic, or C{None}
        when it serves (C{GET /status/ready}).
    @param new_id: makes the id of a new entity.
    @param max_body_size: the largest request body accepted, in bytes.
    @param status_timeout: seconds C{GET /status} waits for the database.
    @param token: the bearer token every request must carry (C{""}: none;
        see L{echogate.admin.guard}).
    @param server_names: the host names the API answers to besides
        address literals and C{localhost}.
    @param health: the data plane's view of its balancers' health, for
        C{GET /upstreams/{u}/health} (by default, every target's health
        is C{HEALTHCHECKS_OFF}: see L{echogate.admin.health}).
    @param dbless: a DB-less node's configuration
        (L{echogate.declarative.dbless.DBlessConfiguration}), which
        C{/config} serves; C{None} for a node with a database.
    """

    app = Klein()

    #: What a handler raises for a path that names nothing (404).
    NotFound = NotFoundError

    def __init__(
        self,
        *,
        store: IStore,
        plugins: Mapping[str, IGatewayPlugin],
        clock: IReactorTime,
        node: NodeInfo,
        on_change: Callable[[], Deferred[Any] | None] | None = None,
        status: Callable[[], Mapping[str, Any]] | None = None,
        ready: Callable[[], str | None] | None = None,
        new_id: Callable[[], str] = _new_uuid,
        max_body_size: int = MAX_BODY_SIZE,
        status_timeout: float = 5.0,
        token: str = "",
        server_names: Sequence[str] = (),
        health: HealthView | None = None,
        dbless: Any = None,
    ):
        self._store = _Lookups(store)
        self._plugins = plugins
        self._clock = clock
        self._node = node
        self._on_change = on_change
        self._status = status
        self._ready = ready
        self._new_id = new_id
        self._max_body_size = max_body_size
        self._status_timeout = status_timeout
        self._token = token
        self._server_names = tuple(server_names)
        self._health: HealthView = health if health is not None else HealthchecksOff()
        # The entities the plugins declare: their endpoints, and their
        # storage in the store's generic table.
        self._entity_endpoints = plugin_entities.by_endpoint(plugins)
        plugin_entities.declare_storage(store, plugins)
        self._dbless = dbless

    def resource(self) -> IResource:
        """
        The twisted.web resource serving this API, behind its checks of
        C{Host}, C{Origin} and the token (L{AdminGuard}).
        """
        return AdminGuard(self.app.resource(), token=self._token,
                          server_names=self._server_names)

    # -- plumbing -------------------------------------------------------

    @app.handle_errors(Exception)  # the bare form's overload in Klein's types is wrong
    def _errors(self, request: IRequest, failure: Failure) -> bytes:
        if failure.check(NotFoundError):
            return json_response(request, NOT_FOUND, 404)
        return error_response(request, failure)

    def _now(self) -> int:
        return int(self._clock.seconds())

    async def _changed(self) -> None:
        if self._on_change is None:
            return
        try:
            await maybeDeferred(self._on_change)
        except Exception:
            _log.failure("on_change failed after a successful write")

    async def _find(self, entity: str, key: str) -> dict[str, Any]:
        record: dict[str, Any] | None = await self._store.get(entity, key)
        if record is None:
            raise NotFoundError(key)
        return record

    def _fields(self, entity: str, request: IRequest,
                existing: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """
        The request body as entity fields: JSON as given, forms typed by
        the entity's schema (a plugin's C{config} by the plugin named in
        the body or, for a patch, by the existing record).
        """
        body: Body = read_body(request, self._max_body_size)
        if body.json is not None:
            return dict(body.json)
        pairs = list(body.pairs or ())
        schema = writes.form_schema(entity, pairs, self._plugins, existing=existing)
        return dict(forms.decode_form(pairs, schema))

    async def _resolve_foreign(self, entity: str, fields: dict[str, Any]) -> None:
        """
        Turn a foreign key given by endpoint key (C{{"name": "x"}}) into
        C{{"id": ...}} when that entity exists; anything else is left for
        validation to judge.
        """
        for field, parent in FOREIGN_KEYS.get(entity, {}).items():
            value = fields.get(field)
            if not isinstance(value, dict) or "id" in value or len(value) != 1:
                continue
            ((key_field, key),) = value.items()
            if not isinstance(key, str) or key_field not in _endpoint_keys(parent):
                continue
            found = await self._store.get(parent, key)
            if found is not None and found.get(key_field) == key:
                fields[field] = {"id": found["id"]}

    # -- operations shared by plain and nested endpoints --------------------

    async def _list(self, request: IRequest, entity: str, path: str,
                    where: Mapping[str, str] | None = None) -> bytes:
        paging = PageRequest.from_query(query_arguments(request.uri))
        records, next_offset = await self._store.page(
            entity, paging.size, paging.offset, tags=paging.tags,
            tags_any=paging.tags_any, where=where)
        body: dict[str, Any] = {"data": records}
        if next_offset is not None:
            body["offset"] = next_offset
        body["next"] = paging.next_link(path, next_offset)
        return json_response(request, body)

    async def _create(self, request: IRequest, entity: str,
                      forced: Mapping[str, Any] | None = None) -> bytes:
        fields = self._fields(entity, request)
        fields.update(forced or {})
        await self._resolve_foreign(entity, fields)
        record = writes.prepare_insert(entity, fields, plugins=self._plugins,
                                         now=self._now(), new_id=self._new_id())
        stored = await self._store.insert(entity, record)
        await self._changed()
        return json_response(request, stored, 201)

    async def _replace(self, request: IRequest, entity: str, key: str,
                       forced: Mapping[str, Any] | None = None) -> bytes:
        existing = await self._store.get(entity, key)
        if is_uuid(key):
            key = key.lower()
            if existing is not None and existing["id"] != key:
                existing = None
            new_id = key
        else:
            names = _endpoint_keys(entity)
            if not names:
                raise SchemaViolation({"id": "expected a valid UUID"})
            if existing is not None and existing.get(names[0]) != key:
                existing = None
            new_id = self._new_id()
        fields = self._fields(entity, request, existing)
        if is_uuid(key):
            fields["id"] = key
        else:
            fields[_endpoint_keys(entity)[0]] = key
        fields.update(forced or {})
        await self._resolve_foreign(entity, fields)
        record = self._prepare_put(entity, fields, existing, new_id)
        stored = await self._store.upsert(entity, record)
        await self._changed()
        return json_response(request, stored)

    def _prepare_put(self, entity: str, fields: dict[str, Any],
                     existing: Mapping[str, Any] | None, new_id: str) -> dict[str, Any]:
        return writes.prepare_replace(entity, fields, existing=existing,
                                        plugins=self._plugins, now=self._now(), new_id=new_id)

    async def _update(self, request: IRequest, entity: str,
                      existing: Mapping[str, Any]) -> bytes:
        fields = self._fields(entity, request, existing)
        await self._resolve_foreign(entity, fields)
        record = writes.prepare_update(entity, existing, fields,
                                         plugins=self._plugins, now=self._now())
        stored = await self._store.update(entity, record)
        await self._changed()
        return json_response(request, stored)

    async def _delete(self, request: IRequest, entity: str, id: str) -> bytes:
        if await self._store.delete(entity, id):
            await self._changed()
        return no_content(request)

    async def _child(self, parent: str, key: str, child: str, child_key: str
                     ) -> tuple[dict[str, Any], dict[str, Any]]:
        """
        The parent, and the child that must belong to it.
        """
        owner = await self._find(parent, key)
        record = await self._find(child, child_key)
        if (record.get(NESTED[parent, child]) or {}).get("id") != owner["id"]:
            raise NotFoundError(child_key)
        return owner, record

    # -- node ---------------------------------------------------------------

    @app.route("/", methods=["GET"])
    async def root(self, request: IRequest) -> bytes:
        in_use: set[str] = set()
        offset = None
        while True:
            records, offset = await self._store.page("plugins", 1000, offset)
            in_use.update(record["name"] for record in records)
            if offset is None:
                break
        node = self._node
        return json_response(request, {
            "tagline": TAGLINE,
            "version": node.version,
            "hostname": node.hostname,
            "node_id": node.node_id,
            "configuration": dict(node.configuration),
            "plugins": {
                "available_on_server": {
                    name: {"version": plugin.version, "priority": plugin.priority}
                    for name, plugin in sorted(self._plugins.items())
                },
                "enabled_in_cluster": sorted(in_use),
            },
        })

    @app.route("/status", methods=["GET"])
    async def status(self, request: IRequest) -> bytes:
        server = dict(self._status()) if self._status is not None else {}
        # The node's missing plugins (configured, not loaded) are shown beside "server".
        missing = server.pop("missing_plugins", None)
        try:
            version = await maybeDeferred(self._store.version).addTimeout(
                self._status_timeout, self._clock)
        except Exception as e:
            _log.warn("The database did not answer GET /status: {error!r}", error=e)
            reachable, version = False, None
        else:
            reachable = True
        return json_response(request, {
            "server": server,
            "database": {"reachable": reachable},
            "configuration_version": version,
            **({"missing_plugins": list(missing)} if missing is not None else {}),
        })

    @app.route("/status/ready", methods=["GET"])
    def status_ready(self, request: IRequest) -> bytes:
        """
        For load balancers and Kubernetes probes (Kong's C{/status/ready}):
        200 while the node serves, 503 before its first configuration is
        loaded and once it is draining to stop.
        """
        why = self._ready() if self._ready is not None else None
        if why is None:
            return json_response(request, {"message": "ready"})
        return json_response(request, {"message": why}, 503)

    @app.route("/metrics", methods=["GET"])
    async def metrics(self, request: IRequest) -> bytes:
        """
        The Prometheus metrics (when the prometheus plugin is enabled).
        """
        from echogate.admin.metrics import metrics_response

        return await metrics_response(request, plugins=self._plugins, store=self._store, status=self._status,
                                      node=self._node, clock=self._clock, timeout=self._status_timeout)

    @app.route("/plugins/enabled", methods=["GET"])
    def enabled_plugins(self, request: IRequest) -> bytes:
        return json_response(request, {"enabled_plugins": sorted(self._plugins)})

    @app.route("/schemas/plugins/<name>", methods=["GET"])
    @app.route("/plugins/schema/<name>", methods=["GET"], endpoint="plugin_schema_old")
    def plugin_schema(self, request: IRequest, name: str) -> bytes:
        """
        The plugin entity's schema with C{config} described by the plugin.
        """
        plugin = self._plugins.get(name)
        if plugin is None:
            return json_response(request, {"message": f"No plugin named '{name}'"}, 404)
        return json_response(request, entities.plugin_schema(plugin).describe())

    @app.route("/schemas/<entity>", methods=["GET"])
    def entity_schema(self, request: IRequest, entity: str) -> bytes:
        kind = _validation.entity_kind(entity, self._plugins)
        if kind is None:
            return json_response(request, {"message": f"No entity named '{entity}'"}, 404)
        return json_response(request, kind.schema.describe())

    # -- collections --------------------------------------------------------

    @app.route(f"/<{_ANY_COLLECTION}:entity>", methods=["GET"])
    async def list_entities(self, request: IRequest, entity: str) -> bytes:
        return await self._list(request, entity, f"/{entity}")

    @app.route(f"/<{_ANY_COLLECTION}:entity>", methods=["POST"])
    async def create_entity(self, request: IRequest, entity: str) -> bytes:
        return await self._create(request, entity)

    @app.route(f"/<{_ANY_COLLECTION}:entity>/<key>", methods=["GET"])
    async def get_entity(self, request: IRequest, entity: str, key: str) -> bytes:
        return json_response(request, await self._find(entity, key))

    @app.route(f"/<{_ANY_COLLECTION}:entity>/<key>", methods=["PUT"])
    async def put_entity(self, request: IRequest, entity: str, key: str) -> bytes:
        return await self._replace(request, entity, key)

    @app.route(f"/<{_ANY_COLLECTION}:entity>/<key>", methods=["PATCH"])
    async def patch_entity(self, request: IRequest, entity: str, key: str) -> bytes:
        return await self._update(request, entity, await self._find(entity, key))

    @app.route(f"/<{_ANY_COLLECTION}:entity>/<key>", methods=["DELETE"])
    async def delete_entity(self, request: IRequest, entity: str, key: str) -> bytes:
        record = await self._store.get(entity, key)
        if record is None:
            return no_content(request)
        return await self._delete(request, entity, record["id"])

    # -- nested collections: /services/{s}/routes and the like ---------------
    # Two rules per handler: services nest routes and plugins; routes and
    # consumers nest plugins.

    _S = "/<any(services):parent>/<key>/<any(routes, plugins):child>"
    _RC = "/<any(routes, consumers):parent>/<key>/<any(plugins):child>"

    @app.route(_S, methods=["GET"], endpoint="list_children_s")
    @app.route(_RC, methods=["GET"], endpoint="list_children_rc")
    async def list_children(self, request: IRequest, parent: str, key: str,
                            child: str) -> bytes:
        owner = await self._find(parent, key)
        return await self._list(request, child, f"/{parent}/{owner['id']}/{child}",
                                where={NESTED[parent, child]: owner["id"]})

    @app.route(_S, methods=["POST"], endpoint="create_child_s")
    @app.route(_RC, methods=["POST"], endpoint="create_child_rc")
    async def create_child(self, request: IRequest, parent: str, key: str,
                           child: str) -> bytes:
        owner = await self._find(parent, key)
        return await self._create(request, child, {NESTED[parent, child]: {"id": owner["id"]}})

    @app.route(_S + "/<child_key>", methods=["GET"], endpoint="get_child_s")
    @app.route(_RC + "/<child_key>", methods=["GET"], endpoint="get_child_rc")
    async def get_child(self, request: IRequest, parent: str, key: str, child: str,
                        child_key: str) -> bytes:
        _, record = await self._child(parent, key, child, child_key)
        return json_response(request, record)

    @app.route(_S + "/<child_key>", methods=["PUT"], endpoint="put_child_s")
    @app.route(_RC + "/<child_key>", methods=["PUT"], endpoint="put_child_rc")
    async def put_child(self, request: IRequest, parent: str, key: str, child: str,
                        child_key: str) -> bytes:
        owner = await self._find(parent, key)
        return await self._replace(request, child, child_key,
                                   {NESTED[parent, child]: {"id": owner["id"]}})

    @app.route(_S + "/<child_key>", methods=["PATCH"], endpoint="patch_child_s")
    @app.route(_RC + "/<child_key>", methods=["PATCH"], endpoint="patch_child_rc")
    async def patch_child(self, request: IRequest, parent: str, key: str, child: str,
                          child_key: str) -> bytes:
        _, record = await self._child(parent, key, child, child_key)
        return await self._update(request, child, record)

    @app.route(_S + "/<child_key>", methods=["DELETE"], endpoint="delete_child_s")
    @app.route(_RC + "/<child_key>", methods=["DELETE"], endpoint="delete_child_rc")
    async def delete_child(self, request: IRequest, parent: str, key: str, child: str,
                           child_key: str) -> bytes:
        _, record = await self._child(parent, key, child, child_key)
        return await self._delete(request, child, record["id"])

    # -- a route's service: /routes/{r}/service -------------------------------

    async def _route_service(self, key: str) -> tuple[dict[str, Any], dict[str, Any]]:
        route = await self._find("routes", key)
        reference = route.get("service")
        if not reference:
            raise NotFoundError(key)
        return route, await self._find("services", reference["id"])

    @app.route("/routes/<key>/service", methods=["GET"])
    async def get_route_service(self, request: IRequest, key: str) -> bytes:
        _, service = await self._route_service(key)
        return json_response(request, service)

    @app.route("/routes/<key>/service", methods=["PATCH"])
    async def patch_route_service(self, request: IRequest, key: str) -> bytes:
        _, service = await self._route_service(key)
        return await self._update(request, "services", service)

    @app.route("/routes/<key>/service", methods=["PUT"])
    async def put_route_service(self, request: IRequest, key: str) -> bytes:
        route = await self._find("routes", key)
        reference = route.get("service")
        existing = None
        if reference:
            existing = await self._store.get("services", reference["id"])
            new_id = reference["id"]
        else:
            new_id = self._new_id()
        fields = self._fields("services", request, existing)
        record = self._prepare_put("services", fields, existing, new_id)
        linked = None
        if not reference:
            # Validate the link before writing anything.
            linked = writes.prepare_update("routes", route, {"service": {"id": record["id"]}},
                                             plugins=self._plugins, now=self._now())
        if linked is None:
            service = await self._store.upsert("services", record)
        else:
            # The new service and the route's link to it: all or nothing.
            service, _ = await self._store.write([("upsert", "services", record), ("update", "routes", linked)])
        await self._changed()
        return json_response(request, service)

    @app.route("/routes/<key>/service", methods=["DELETE"])
    async def delete_route_service(self, request: IRequest, key: str) -> bytes:
        await self._route_service(key)
        return json_response(request, METHOD_NOT_ALLOWED, 405)


def _endpoint_keys(entity: str) -> tuple[str, ...]:
    return tuple(entities.ENTITIES[entity].endpoint_keys)



# Consumers' credentials: /consumers/{c}/key-auth, /key-auths and the like.
from echogate.admin import credentials as _credentials  # noqa: E402

_credentials.register(AdminAPI.app)

# Entities plugins declare: /{endpoint}, /consumers/{c}/{endpoint} and the like
# (their rules are tried after every other rule of the application).
from echogate.admin import plugin_entities as _plugin_entities  # noqa: E402

_plugin_entities.register(AdminAPI.app)

# Upstreams' targets and health: /upstreams/{u}/targets and the like.
from echogate.admin import upstreams as _upstreams  # noqa: E402

_upstreams.register(AdminAPI.app)

# Certificates (by id or SNI name), their snis, CA certificates.
from echogate.admin import certificates as _certificates  # noqa: E402

_certificates.register(AdminAPI.app)

# Tags across entities: /tags and /tags/{tag}.
from echogate.admin import tags as _tags  # noqa: E402

_tags.register(AdminAPI.app)

# Validating without writing: /schemas/{entity}/validate, /schemas/plugins/validate.
from echogate.admin import validation as _validation  # noqa: E402

_validation.register(AdminAPI.app)

# A DB-less node's whole configuration: /config.
from echogate.admin import config as _config  # noqa: E402

_config.register(AdminAPI.app)

# The API's own paths, from the routing map: /endpoints (registered last).
from echogate.admin import endpoints as _endpoints  # noqa: E402

_endpoints.register(AdminAPI.app)
