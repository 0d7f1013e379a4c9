"""
The core entities (services, routes, consumers, plugins): their schemas,
with Kong 3's fields, defaults and messages. The functions the Admin API
calls to turn a request body into a complete, validated record are in
L{echogate.entities.writes}.

Records are Kong-shaped JSON-ready dicts: every field present (C{None}
when unset), foreign keys as C{{"id": uuid}}, timestamps in integer
seconds. Where echogate differs from Kong:

  - services and routes speak C{http}, C{https}, C{grpc} and C{grpcs},
    not the stream protocols; the stream fields (C{sources},
    C{destinations}) do not exist. The TLS fields
    (a service's C{client_certificate}, C{tls_verify}, C{tls_verify_depth},
    C{ca_certificates}; a route's C{snis}) are Kong's.
  - C{retries}, the timeouts, C{regex_priority} and C{path_handling}
    cannot be null; C{path_handling} is only C{"v0"}.
  - route paths are checked against the proxy's path normalisation
    (L{echogate.routing.paths.normalize_path}) and regex paths compiled as the
    router compiles them (L{echogate.routing.paths.compile_regex_path}); hosts
    are parsed by L{echogate.entities.hosts.parse_host}.
"""
from __future__ import annotations

import re
import types
from typing import Any, Mapping

import attrs

from echogate.entities import certificates, credentials, upstreams
from echogate.entities.hosts import parse_host
from echogate.entities.limits import INDEXED_MAX
from echogate.pdk.entities import PluginEntity
from echogate.routing import paths
from echogate.schema import ENTITY, Record, at_least_one_of
from echogate.schema.containers import Array, Map, Set
from echogate.schema.fields import NO_DEFAULT, Boolean, Foreign, Integer, String, is_uuid

__all__ = [
    "EntityType",
    "ENTITIES",
    "declared_type",
    "plugin_schema",
]

HTTP_PROTOCOLS = ("http", "https")
GRPC_PROTOCOLS = ("grpc", "grpcs")
#: The protocols of services, routes and plugins (Kong's C{http} subsystem),
#: in Kong's order.
PROTOCOLS = ("grpc", "grpcs", "http", "https")
PLUGIN_PROTOCOLS = PROTOCOLS

# ---------------------------------------------------------------------------
# Value checks, after Kong's kong/db/schema/typedefs.lua


def _utf8(value: str) -> str | None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"invalid utf-8 character sequence detected at position {e.start + 1}"
    return None


def _uuid(value: str) -> str | None:
    return None if is_uuid(value) else "expected a valid UUID"


def _timestamp(value: int) -> str | None:
    return None if value > 0 else "expected a valid timestamp"


_NAME = re.compile(r"^[A-Za-z0-9.\-_~\u0080-\U0010ffff]+\Z")
_TAG = re.compile(r"^[ \x21-\x2b\x2d\x2e\x30-\x7e\u0080-\U0010ffff]+\Z")


def _name(value: str) -> str | None:
    if _NAME.match(value) is None:
        return (
            f"invalid value '{value}': the only accepted ascii characters are"
            " alphanumerics or ., -, _, and ~"
        )
    return _utf8(value)


def _tag(value: str) -> str | None:
    if _TAG.match(value) is None:
        return (
            f"invalid tag '{value}': expected printable ascii (except `,` and `/`)"
            " or valid utf-8 sequences"
        )
    return _utf8(value)


def _service_host(value: str) -> str | None:
    try:
        _, _, port = parse_host(value)
    except ValueError as e:
        if str(e) == "invalid port number":
            return "must not have a port"
        return f"invalid value: {value}"
    return "must not have a port" if port is not None else None


def _route_host(value: str) -> str | None:
    if value.count("*") > 1:
        return "invalid wildcard: must have at most one wildcard"
    if "*" in value and not (value.startswith("*.") or value.endswith(".*")):
        return "invalid wildcard: must be placed at leftmost or rightmost label"
    mock = value.replace("*", "wildcard")
    try:
        parse_host(mock)
    except ValueError as e:
        return str(e).replace(mock, value)
    return None


_PATH_CHARS = re.compile(r"^/[A-Za-z0-9.\-_~/%:@!$&'()*+,;=]*\Z")


def _percent_encoding(value: str) -> str | None:
    raw = re.sub(r"%[0-9A-Fa-f]{2}", "___", value)
    at = raw.find("%")
    if at >= 0:
        return f"invalid url-encoded value: '{raw[at:at + 3]}'"
    return None


def _service_path(value: str) -> str | None:
    if "//" in value:
        return "must not have empty segments"
    if _PATH_CHARS.match(value) is None:
        return (
            f"invalid path: '{value}'"
            " (characters outside of the reserved list of RFC 3986 found)"
        )
    return _percent_encoding(value)


def _router_path(value: str) -> str | None:
    if not value.startswith(("/", "~/")):
        return "should start with: / (fixed path) or ~/ (regex path)"
    if "//" in value:
        return "must not have empty segments"
    if value.startswith("~"):
        try:
            paths.compile_regex_path(value)
        except ValueError as e:
            return f"invalid regex: '{value[1:]}' ({e.__cause__ or e})"
        return None
    bad = _percent_encoding(value)
    if bad:
        return bad
    return paths.normal_form_problem(value)


def _header_name(value: str) -> str | None:
    if value.lower() == "host":
        return "cannot contain 'host' header, which must be specified in the 'hosts' attribute"
    if re.match(r"^[A-Za-z0-9_-]+\Z", value) is None:
        return f"bad header name '{value}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"
    return None


#: The sets of route protocols that cannot be mixed (Kong's, less the
#: stream protocols echogate does not speak).
_EXCLUSIVE_PROTOCOLS = (HTTP_PROTOCOLS, GRPC_PROTOCOLS)


def _route_protocols(value: list[str]) -> str | None:
    """
    Kong's C{mutually_exclusive_subsets}: a route's protocols come from one
    family (C{http}/C{https} or C{grpc}/C{grpcs}).
    """
    families: list[tuple[str, ...]] = []
    for protocol in value:
        for family in _EXCLUSIVE_PROTOCOLS:
            if protocol in family and family not in families:
                families.append(family)
    if len(families) <= 1:
        return None
    return "these sets are mutually exclusive: " + ", ".join(
        "(" + ", ".join(f"'{p}'" for p in family) + ")" for family in families)


def _is_grpc_route(route: Mapping[str, Any]) -> bool:
    """
    Whether C{route} takes Kong's C{grpc} subschema: its first protocol
    is C{grpc} or C{grpcs} (the families cannot be mixed).
    """
    protocols: list[str] = route.get("protocols") or []
    return bool(protocols) and protocols[0] in GRPC_PROTOCOLS


def _route_has_matcher(route: dict[str, Any]) -> Mapping[str, str] | None:
    protocols = route.get("protocols") or ()
    if _is_grpc_route(route):
        matchers = ["hosts", "headers", "paths"]
        which = "grpc"
        if "grpcs" in protocols:
            which = "grpcs"
            matchers.append("snis")
    else:
        matchers = ["methods", "hosts", "headers", "paths"]
        which = "http"
        if "https" in protocols:
            which = "https"
            matchers.append("snis")
    if any(route.get(f) for f in matchers):
        return None
    return {
        ENTITY: "must set one of " + ", ".join(f"'{f}'" for f in matchers)
        + f" when 'protocols' is '{which}'"
    }


def _grpc_route_fields(route: dict[str, Any]) -> Mapping[str, str] | None:
    """
    Kong's C{grpc} subschema: a gRPC route neither strips its path nor
    matches methods.
    """
    if not _is_grpc_route(route):
        return None
    errors = {}
    if route.get("strip_path") is True:
        errors["strip_path"] = "cannot set 'strip_path' when 'protocols' is 'grpc' or 'grpcs'"
    if route.get("methods"):
        errors["methods"] = "cannot set 'methods' when 'protocols' is 'grpc' or 'grpcs'"
    return errors or None


#: The route protocols that allow C{snis} (Kong's list; echogate speaks https of them).
_SNI_PROTOCOLS = ("grpcs", "https", "tls", "tls_passthrough")


def _route_snis_need_tls(route: dict[str, Any]) -> Mapping[str, Any] | None:
    """
    Kong's conditional check: C{snis} only when some protocol is TLS.
    """
    if not route.get("snis") or any(p in _SNI_PROTOCOLS for p in route.get("protocols") or ()):
        return None
    return {"snis": "length must be 0",
            ENTITY: "'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls' or 'tls_passthrough'"}


#: The service fields that only an https service may set (Kong's conditional checks).
_SERVICE_TLS_FIELDS = ("client_certificate", "tls_verify", "tls_verify_depth", "ca_certificates")


def _service_path_not_grpc(service: dict[str, Any]) -> Mapping[str, Any] | None:
    """
    Kong's conditional check: a gRPC service has no C{path}.
    """
    if service.get("protocol") in GRPC_PROTOCOLS and service.get("path") is not None:
        return {"path": "value must be null",
                ENTITY: "failed conditional validation given value of field 'protocol'"}
    return None


def _service_tls_needs_https(service: dict[str, Any]) -> Mapping[str, Any] | None:
    # (Kong takes these on https services only; grpcs services take them
    # here too, as their TLS is verified by default: a service with its own
    # CA needs them.)
    if service.get("protocol") in ("https", "grpcs"):
        return None
    errors: dict[str, Any] = {f: "value must be null" for f in _SERVICE_TLS_FIELDS
                              if service.get(f) is not None}
    if errors:
        errors[ENTITY] = "failed conditional validation given value of field 'protocol'"
    return errors or None


# ---------------------------------------------------------------------------
# Schemas

_COMMON = {
    "id": String(required=True, check=_uuid),
    "created_at": Integer(required=True, check=_timestamp),
    "updated_at": Integer(required=True, check=_timestamp),
}
_TAGS = Set(String(check=_tag, len_max=INDEXED_MAX), description="A set of strings representing tags.")
_TIMEOUT = Integer(required=True, between=(1, 2**31 - 2), default=60000)

SERVICES = Record({
    **_COMMON,
    "name": String(check=_name, len_max=INDEXED_MAX, description="The service name."),
    "retries": Integer(required=True, between=(0, 32767), default=5,
                       description="The number of retries to execute upon failure to proxy."),
    "protocol": String(required=True, one_of=PROTOCOLS, default="http",
                       description="The protocol used to talk to the upstream."),
    "host": String(required=True, check=_service_host,
                   description="The host of the upstream server."),
    "port": Integer(required=True, between=(0, 65535), default=80,
                    description="The upstream server port (443 by default for https and grpcs)."),
    "path": String(starts_with="/", check=_service_path,
                   description="The path to be used in requests to the upstream server."),
    "connect_timeout": attrs.evolve(_TIMEOUT, description="Connection timeout (ms)."),
    "write_timeout": attrs.evolve(_TIMEOUT, description="Write timeout (ms)."),
    "read_timeout": attrs.evolve(_TIMEOUT, description="Read timeout (ms)."),
    "tags": _TAGS,
    "client_certificate": Foreign("certificates", description=(
        "Certificate to be used as client certificate while TLS handshaking to the upstream server.")),
    "tls_verify": Boolean(description=(
        "Whether to enable verification of upstream server TLS certificate"
        " (null: the node's setting).")),
    "tls_verify_depth": Integer(between=(0, 64), description=(
        "Maximum depth of chain while verifying Upstream server's TLS certificate.")),
    "ca_certificates": Array(String(check=_uuid), description=(
        "Array of CA Certificate object UUIDs that are used to build the trust store while"
        " verifying upstream server's TLS certificate.")),
    "enabled": Boolean(required=True, default=True, description="Whether the service is active."),
}, checks=(_service_path_not_grpc, _service_tls_needs_https))

ROUTES = Record({
    **_COMMON,
    "name": String(check=_name, len_max=INDEXED_MAX, description="The route name."),
    "protocols": Set(String(one_of=PROTOCOLS), required=True, len_min=1,
                     default=list(HTTP_PROTOCOLS), check=_route_protocols,
                     description="The protocols this route allows."),
    "https_redirect_status_code": Integer(required=True, one_of=(426, 301, 302, 307, 308),
                                          default=426),
    "strip_path": Boolean(required=True, default=True),
    "preserve_host": Boolean(required=True, default=False),
    "request_buffering": Boolean(required=True, default=True),
    "response_buffering": Boolean(required=True, default=True),
    "tags": _TAGS,
    "service": Foreign("services", description="The service this route proxies to."),
    "methods": Set(String(match=r"^[A-Z]+\Z"), description="HTTP methods this route matches."),
    "hosts": Array(String(check=_route_host), description="Hosts this route matches."),
    "paths": Array(String(check=_router_path),
                   description="Path prefixes (or ~regexes) this route matches."),
    "headers": Map(String(check=_header_name), Array(String(), len_min=1),
                   description="Header names to the values this route matches."),
    "snis": Set(String(check=certificates.wildcard_host_problem),
                description="SNIs this route matches (https only)."),
    "regex_priority": Integer(required=True, default=0),
    "path_handling": String(required=True, one_of=("v0",), default="v0"),
}, checks=(_route_snis_need_tls, _grpc_route_fields, _route_has_matcher))

CONSUMERS = Record({
    **_COMMON,
    "username": String(len_max=INDEXED_MAX, description="The unique username of the consumer."),
    "custom_id": String(len_max=INDEXED_MAX, description="The consumer's unique id in another system."),
    "tags": _TAGS,
}, checks=(at_least_one_of("custom_id", "username"),))

PLUGINS = Record({
    "id": _COMMON["id"],
    "name": String(required=True, len_max=INDEXED_MAX, description="The name of the plugin."),
    "instance_name": String(check=_name, len_max=INDEXED_MAX),
    "created_at": _COMMON["created_at"],
    "updated_at": _COMMON["updated_at"],
    "route": Foreign("routes"),
    "service": Foreign("services"),
    "consumer": Foreign("consumers"),
    "config": Record({}, required=True, description="The plugin's configuration."),
    "protocols": Set(String(one_of=PLUGIN_PROTOCOLS), required=True,
                     default=list(PLUGIN_PROTOCOLS)),
    "enabled": Boolean(required=True, default=True, description="Whether the plugin is applied."),
    "tags": _TAGS,
})


@attrs.frozen
class EntityType:
    """
    One kind of entity.

    @ivar name: the collection name, e.g. C{"services"}.
    @ivar schema: the full record schema (for plugins, C{config} is an
        empty placeholder: see L{plugin_schema}).
    @ivar endpoint_keys: fields that address an entity besides C{id}.
    @ivar unique: fields whose values are unique.
    @ivar foreign: foreign key fields.
    @ivar declaration: for an entity a plugin owns (or a bundled
        credential entity), its L{echogate.pdk.entities.PluginEntity}.
    """

    name: str
    schema: Record
    endpoint_keys: tuple[str, ...] = ()
    unique: tuple[str, ...] = ()
    foreign: tuple[str, ...] = ()
    declaration: PluginEntity | None = attrs.field(default=None, eq=False, repr=False)


def declared_type(declaration: PluginEntity) -> EntityType:
    """
    The L{EntityType} of an entity a plugin declares: its own fields after
    C{id}, C{created_at}, C{updated_at} and its parent's field (required),
    then C{tags}; its record checks kept.
    """
    parent = declaration.parent_field
    fields: dict[str, Any] = dict(_COMMON)
    if parent is not None:
        fields[parent] = Foreign(declaration.parent or "", required=True, description=(
            f"The {parent} this {declaration.name} record belongs to (deleted with it)."))
    fields.update(declaration.schema.fields)
    fields["tags"] = _TAGS
    schema = Record(fields, checks=declaration.schema.checks, description=declaration.description)
    keys = (declaration.endpoint_key,) if declaration.endpoint_key in declaration.unique else ()
    return EntityType(declaration.name, schema, keys, declaration.unique,
                      (parent,) if parent is not None else (), declaration)


ENTITIES: Mapping[str, EntityType] = types.MappingProxyType({
    "services": EntityType("services", SERVICES, ("name",), ("name",), ("client_certificate",)),
    "routes": EntityType("routes", ROUTES, ("name",), ("name",), ("service",)),
    "consumers": EntityType("consumers", CONSUMERS, ("username", "custom_id"),
                            ("username", "custom_id")),
    "plugins": EntityType("plugins", PLUGINS, (), ("instance_name",),
                          ("service", "route", "consumer")),
    # Load balancing: see echogate.entities.upstreams. A target's endpoint key
    # (its target) is unique only within its upstream: the Admin API looks it up there.
    "upstreams": EntityType("upstreams", upstreams.upstream_schema(_COMMON, _TAGS), ("name",), ("name",)),
    "targets": EntityType("targets", upstreams.target_schema(_COMMON, _TAGS), (), (), ("upstream",)),
    # TLS: see echogate.entities.certificates. A certificate's "snis" is a
    # shorthand of writes; the Admin API also finds certificates by SNI name.
    "certificates": EntityType("certificates", certificates.certificate_schema(_COMMON, _TAGS)),
    "snis": EntityType("snis", certificates.sni_schema(_COMMON, _TAGS), ("name",), ("name",),
                       ("certificate",)),
    "ca_certificates": EntityType("ca_certificates",
                                  certificates.ca_certificate_schema(_COMMON, _TAGS),
                                  (), ("cert_digest",)),
    # Consumers' credentials (key-auth, basic-auth, jwt, acls): see echogate.entities.credentials.
    # Declared as plugin entities (echogate.pdk.entities.PluginEntity) that the bundled
    # plugins own, and always known, with their own tables.
    **{declaration.name: declared_type(declaration) for declaration in credentials.DECLARED},
})


def plugin_schema(plugin: Any) -> Record:
    """
    The full plugin record schema for C{plugin}, whose C{config} is the
    plugin's C{config_schema} (required: C{null} is refused, absence
    gives the defaults). A plugin whose C{no_consumer} attribute is true
    cannot be scoped to a consumer. A plugin without a C{config_schema}
    takes no settings: its C{config} is an empty record.
    """
    declared = getattr(plugin, "config_schema", None)
    config = attrs.evolve(declared if declared is not None else Record({}), required=True, default=NO_DEFAULT)
    schema = PLUGINS.with_field("config", config)
    if getattr(plugin, "no_consumer", False):
        # Kong's typedefs.no_consumer: the auth plugins cannot be scoped to a consumer.
        schema = schema.with_field("consumer", attrs.evolve(PLUGINS.fields["consumer"], check=_no_consumer))
    return schema


def _no_consumer(value: Any) -> str | None:
    return "value must be null"
