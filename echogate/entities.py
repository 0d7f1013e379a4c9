"""
The core entities (services, routes, consumers, plugins): their schemas,
with Kong 3's fields, defaults and messages, and the functions the Admin
API calls to turn a request body into a complete, validated record.

Records are Kong-shaped JSON-ready dicts: every field present (C{None}
when unset), foreign keys as C{{"id": uuid}}, timestamps in integer
seconds. Where echogate differs from Kong:

  - services and routes speak only C{http} and C{https}; the TLS and
    stream fields (C{client_certificate}, C{tls_verify}, C{snis},
    C{sources}, ...) do not exist.
  - a service's C{port} defaults to 443 when its C{protocol} is https.
  - C{url} together with C{protocol}, C{host}, C{port} or C{path} is an
    error, as is a C{url} with credentials, a query or a fragment.
  - C{retries}, the timeouts, C{regex_priority} and C{path_handling}
    cannot be null; C{path_handling} is only C{"v0"}.
  - route paths are checked against the proxy's path normalisation
    (L{echogate.paths.normalize_path}) and regex paths compiled as the
    router compiles them (L{echogate.paths.compile_regex_path}).
  - C{id} and C{created_at} cannot be changed by PUT or PATCH.
"""
from __future__ import annotations

import re
import types
from typing import Any, Mapping, Sequence
from urllib.parse import urlsplit

import attrs

from echogate import credentials, paths
from echogate.containers import Array, Map, Set
from echogate.errors import SchemaViolation
from echogate.fields import NO_DEFAULT, REQUIRED, Boolean, Field, Foreign, Integer, String, is_uuid
from echogate.schema import ENTITY, Record, at_least_one_of

__all__ = [
    "EntityType",
    "ENTITIES",
    "form_schema",
    "plugin_schema",
    "prepare_insert",
    "prepare_replace",
    "prepare_update",
    "parse_host",
]

HTTP_PROTOCOLS = ("http", "https")
PLUGIN_PROTOCOLS = ("grpc", "grpcs", "http", "https")
IMMUTABLE = "immutable field cannot be updated"

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


_NAME = re.compile(r"^[A-Za-z0-9.\-_~\u0080-\U0010ffff]+$")
_TAG = re.compile(r"^[ \x21-\x2b\x2d\x2e\x30-\x7e\u0080-\U0010ffff]+$")


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


_IPV4 = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?::(\d+))?$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9\-._]+$")
_IPV6_HEX = re.compile(r"^[0-9A-Fa-f]{1,4}$")


def _port(text: str | None) -> int | None:
    if text is None:
        return None
    if int(text) > 65535:
        raise ValueError("invalid port number")
    return int(text)


def _is_ipv6(text: str) -> bool:
    if text.count("::") > 1:
        return False
    head, double, tail = text.partition("::")
    groups = [g for g in (head.split(":") if head else [])] + [
        g for g in (tail.split(":") if tail else [])
    ]
    if not all(_IPV6_HEX.match(g) for g in groups):
        return False
    return len(groups) < 8 if double else len(groups) == 8


def parse_host(address: str) -> tuple[str, str, int | None]:
    """
    Parse C{name}, C{name:port}, C{ipv4}, C{ipv4:port}, C{ipv6} or
    C{[ipv6]:port}, as Kong's C{normalize_ip} does.

    @return: C{(kind, host, port)}: C{kind} is C{"name"}, C{"ipv4"} or
        C{"ipv6"}; C{port} is C{None} when not given.
    @raise ValueError: with Kong's message when C{address} is not valid.
    """
    if address.count(":") > 1:
        bracketed = re.match(r"^\[([^\]]*)\](.*)$", address)
        if bracketed:
            host, rest = bracketed.groups()
            if rest and not re.match(r"^:\d+$", rest):
                raise ValueError("invalid ipv6 address")
            port = _port(rest[1:] if rest else None)
        else:
            host, port = address, None
        if not _is_ipv6(host):
            raise ValueError(f"invalid ipv6 address: {address}")
        return "ipv6", host, port
    if re.match(r"^[\d.]+$", address.replace(":", "")):
        m = _IPV4.match(address)
        if m is None or any(int(octet) > 255 for octet in m.group(1, 2, 3, 4)):
            raise ValueError(f"invalid ipv4 address: {address}")
        return "ipv4", address.rsplit(":", 1)[0], _port(m.group(5))
    m = re.search(r":(\d+)$", address)
    name = address[: m.start()] if m else address
    port = _port(m.group(1) if m else None)
    labels = name.split(".")
    if _HOSTNAME.match(name) is None or any(
        label.endswith("-") or (label == "" and i != len(labels) - 1)
        for i, label in enumerate(labels)
    ):
        raise ValueError(f"invalid hostname: {address}")
    return "name", name, port


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


_PATH_CHARS = re.compile(r"^/[A-Za-z0-9.\-_~/%:@!$&'()*+,;=]*$")


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
    try:
        normal = paths.normalize_path(value)
    except ValueError:
        return f"invalid value: {value}"
    if normal != value:
        return f"non-normalized path, consider use '{normal}' instead"
    return None


def _header_name(value: str) -> str | None:
    if value.lower() == "host":
        return "cannot contain 'host' header, which must be specified in the 'hosts' attribute"
    if re.match(r"^[A-Za-z0-9_-]+$", value) is None:
        return f"bad header name '{value}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"
    return None


def _route_has_matcher(route: dict[str, Any]) -> Mapping[str, str] | None:
    if any(route.get(f) for f in ("methods", "hosts", "headers", "paths")):
        return None
    which = "https" if "https" in (route.get("protocols") or ()) else "http"
    return {
        ENTITY: f"must set one of 'methods', 'hosts', 'headers', 'paths'"
        f" when 'protocols' is '{which}'"
    }


# ---------------------------------------------------------------------------
# Schemas

_COMMON = {
    "id": String(required=True, check=_uuid),
    "created_at": Integer(required=True, check=_timestamp),
    "updated_at": Integer(required=True, check=_timestamp),
}
_TAGS = Set(String(check=_tag), description="A set of strings representing tags.")
_TIMEOUT = Integer(required=True, between=(1, 2**31 - 2), default=60000)

SERVICES = Record({
    **_COMMON,
    "name": String(check=_name, description="The service name."),
    "retries": Integer(required=True, between=(0, 32767), default=5,
                       description="The number of retries to execute upon failure to proxy."),
    "protocol": String(required=True, one_of=HTTP_PROTOCOLS, default="http",
                       description="The protocol used to talk to the upstream."),
    "host": String(required=True, check=_service_host,
                   description="The host of the upstream server."),
    "port": Integer(required=True, between=(0, 65535), default=80,
                    description="The upstream server port (443 by default for https)."),
    "path": String(starts_with="/", check=_service_path,
                   description="The path to be used in requests to the upstream server."),
    "connect_timeout": attrs.evolve(_TIMEOUT, description="Connection timeout (ms)."),
    "write_timeout": attrs.evolve(_TIMEOUT, description="Write timeout (ms)."),
    "read_timeout": attrs.evolve(_TIMEOUT, description="Read timeout (ms)."),
    "tags": _TAGS,
    "enabled": Boolean(required=True, default=True, description="Whether the service is active."),
})

ROUTES = Record({
    **_COMMON,
    "name": String(check=_name, description="The route name."),
    "protocols": Set(String(one_of=HTTP_PROTOCOLS), required=True, len_min=1,
                     default=list(HTTP_PROTOCOLS),
                     description="The protocols this route allows."),
    "https_redirect_status_code": Integer(required=True, one_of=(426, 301, 302, 307, 308),
                                          default=426),
    "strip_path": Boolean(required=True, default=True),
    "preserve_host": Boolean(required=True, default=False),
    "request_buffering": Boolean(required=True, default=True),
    "response_buffering": Boolean(required=True, default=True),
    "tags": _TAGS,
    "service": Foreign("services", description="The service this route proxies to."),
    "methods": Set(String(match=r"^[A-Z]+$"), description="HTTP methods this route matches."),
    "hosts": Array(String(check=_route_host), description="Hosts this route matches."),
    "paths": Array(String(check=_router_path),
                   description="Path prefixes (or ~regexes) this route matches."),
    "headers": Map(String(check=_header_name), Array(String(), len_min=1),
                   description="Header names to the values this route matches."),
    "regex_priority": Integer(required=True, default=0),
    "path_handling": String(required=True, one_of=("v0",), default="v0"),
}, checks=(_route_has_matcher,))

CONSUMERS = Record({
    **_COMMON,
    "username": String(description="The unique username of the consumer."),
    "custom_id": String(description="The consumer's unique id in another system."),
    "tags": _TAGS,
}, checks=(at_least_one_of("custom_id", "username"),))

PLUGINS = Record({
    "id": _COMMON["id"],
    "name": String(required=True, description="The name of the plugin."),
    "instance_name": String(check=_name),
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
    """

    name: str
    schema: Record
    endpoint_keys: tuple[str, ...] = ()
    unique: tuple[str, ...] = ()
    foreign: tuple[str, ...] = ()


ENTITIES: Mapping[str, EntityType] = types.MappingProxyType({
    "services": EntityType("services", SERVICES, ("name",), ("name",)),
    "routes": EntityType("routes", ROUTES, ("name",), ("name",), ("service",)),
    "consumers": EntityType("consumers", CONSUMERS, ("username", "custom_id"),
                            ("username", "custom_id")),
    "plugins": EntityType("plugins", PLUGINS, (), ("instance_name",),
                          ("service", "route", "consumer")),
    # Consumers' credentials (key-auth, basic-auth, jwt, acls): see echogate.credentials.
    **{name: EntityType(name, *spec) for name, spec in credentials.entity_specs(_COMMON, _TAGS).items()},
})

# ---------------------------------------------------------------------------
# Preparing records


def plugin_schema(plugin: Any) -> Record:
    """
    The full plugin record schema for C{plugin}, whose C{config} is the
    plugin's C{config_schema} (required: C{null} is refused, absence
    gives the defaults). A plugin whose C{no_consumer} attribute is true
    cannot be scoped to a consumer.
    """
    config = attrs.evolve(plugin.config_schema, required=True, default=NO_DEFAULT)
    schema = PLUGINS.with_field("config", config)
    if getattr(plugin, "no_consumer", False):
        # Kong's typedefs.no_consumer: the auth plugins cannot be scoped to a consumer.
        schema = schema.with_field("consumer", attrs.evolve(PLUGINS.fields["consumer"], check=_no_consumer))
    return schema


def _no_consumer(value: Any) -> str | None:
    return "value must be null"


def _name_in(body: Any) -> Any:
    if isinstance(body, Mapping):
        return body.get("name")
    for key, value in body:
        if key == "name":
            return value
    return None


def _plugin_schema_for(name: Any, plugins: Mapping[str, Any], errors: dict[str, Any]) -> Record:
    if isinstance(name, str) and name in plugins:
        return plugin_schema(plugins[name])
    if isinstance(name, str):
        errors["name"] = (
            f"plugin '{name}' not enabled; add it to the 'plugins' configuration property"
        )
    return PLUGINS.with_field("config", Field())


def form_schema(
    entity: str,
    body: Mapping[str, Any] | Sequence[tuple[str, str]],
    plugins: Mapping[str, Any],
    *,
    existing: Mapping[str, Any] | None = None,
) -> Record:
    """
    The schema to type a form body with (see L{echogate.forms.decode_form}).

    @param body: the form's C{(name, value)} pairs, or a dict.
    @param existing: for a PATCH, the record being changed (a plugin's
        C{name} is taken from it when the body has none).
    """
    schema = _entity(entity).schema
    if entity == "services":
        return schema.with_field("url", String())
    if entity == "plugins":
        name = _name_in(body)
        if name is None and existing is not None:
            name = existing.get("name")
        if isinstance(name, str) and name in plugins:
            return plugin_schema(plugins[name])
        return schema.without("config")
    return schema


def _entity(entity: str) -> EntityType:
    try:
        return ENTITIES[entity]
    except KeyError:
        raise ValueError(f"unknown entity {entity!r}") from None


def _as_body(body: Any) -> dict[str, Any]:
    if not isinstance(body, Mapping):
        raise SchemaViolation({ENTITY: ["expected a record"]})
    return dict(body)


_URL_FIELDS = ("protocol", "host", "port", "path")


def _url_parts(url: Any) -> dict[str, Any]:
    if not isinstance(url, str):
        raise ValueError("expected a string")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError("could not parse url") from None
    if not parts.scheme:
        raise ValueError("missing scheme in url")
    netloc = parts.netloc
    if "@" in netloc:
        raise ValueError("must not have credentials")
    if netloc.startswith("["):
        host = netloc[1:netloc.find("]")]
    else:
        host = netloc.rsplit(":", 1)[0] if ":" in netloc else netloc
    if not host:
        raise ValueError("missing host in url")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return {"protocol": parts.scheme, "host": host, "port": port, "path": parts.path or None}


def _expand_url(body: dict[str, Any], errors: dict[str, Any]) -> dict[str, Any]:
    """
    Replace a service's C{url} shorthand by the fields it stands for.
    """
    if "url" not in body:
        return body
    url = body.pop("url")
    if url is None:
        return body
    given = [f for f in _URL_FIELDS if body.get(f) is not None]
    if given:
        errors["url"] = "cannot be set together with " + ", ".join(f"'{f}'" for f in given)
        return body
    try:
        body.update(_url_parts(url))
    except ValueError as e:
        errors["url"] = str(e)
    return body


def _immutable(body: Mapping[str, Any], existing: Mapping[str, Any], errors: dict[str, Any]) -> None:
    for key in ("id", "created_at"):
        value = body.get(key)
        if value is None:
            continue
        old = existing.get(key)
        same = value.lower() == old.lower() if isinstance(value, str) and isinstance(old, str) \
            else value == old
        if not same:
            errors[key] = IMMUTABLE


def _schema(entity: str, name: Any, plugins: Mapping[str, Any], errors: dict[str, Any]) -> Record:
    if entity == "plugins":
        return _plugin_schema_for(name, plugins, errors)
    return _entity(entity).schema


def _validate(schema: Record, record: dict[str, Any], errors: dict[str, Any]) -> dict[str, Any]:
    try:
        result = schema.validate(record)
    except SchemaViolation as e:
        found = dict(e.fields or {})
        if "url" in errors:
            found = {k: v for k, v in found.items() if not (k in _URL_FIELDS and v == REQUIRED)}
        raise SchemaViolation({**found, **errors}) from None
    if errors:
        raise SchemaViolation(errors)
    if "id" in result:
        result["id"] = result["id"].lower()
    return result


def _complete(
    entity: str,
    body: Any,
    *,
    existing: Mapping[str, Any] | None,
    plugins: Mapping[str, Any],
    now: int,
    new_id: str,
) -> dict[str, Any]:
    _entity(entity)
    errors: dict[str, Any] = {}
    body = _as_body(body)
    if entity == "services":
        body = _expand_url(body, errors)
        if "port" not in body and body.get("protocol") == "https":
            body["port"] = 443
    if existing is None:
        if body.get("id") is None:
            body["id"] = new_id
        if body.get("created_at") is None:
            body["created_at"] = now
    else:
        _immutable(body, existing, errors)
        body["id"] = existing["id"]
        body["created_at"] = existing["created_at"]
    body["updated_at"] = now
    schema = _schema(entity, body.get("name"), plugins, errors)
    return _validate(schema, body, errors)


def prepare_insert(
    entity: str, body: Any, *, plugins: Mapping[str, Any], now: int, new_id: str
) -> dict[str, Any]:
    """
    A new record from a POST body.

    @param entity: C{"services"}, C{"routes"}, C{"consumers"} or
        C{"plugins"}.
    @param plugins: the enabled plugins by name (each with a
        C{config_schema}).
    @param now: the current time, integer seconds.
    @param new_id: the id to give the record unless the body has one.
    @return: the complete validated record.
    @raise SchemaViolation: listing every bad field.
    """
    return _complete(entity, body, existing=None, plugins=plugins, now=now, new_id=new_id)


def prepare_replace(
    entity: str,
    body: Any,
    *,
    existing: Mapping[str, Any] | None,
    plugins: Mapping[str, Any],
    now: int,
    new_id: str,
) -> dict[str, Any]:
    """
    A record from a PUT body: a full replacement (absent fields take
    their defaults, not C{existing}'s values) that keeps C{existing}'s
    C{id} and C{created_at}; with no C{existing}, the same as
    L{prepare_insert}.

    @raise SchemaViolation: listing every bad field (C{id} or
        C{created_at} differing from C{existing}'s among them).
    """
    return _complete(entity, body, existing=existing, plugins=plugins, now=now, new_id=new_id)


def prepare_update(
    entity: str,
    existing: Mapping[str, Any],
    patch: Any,
    *,
    plugins: Mapping[str, Any],
    now: int,
) -> dict[str, Any]:
    """
    A record from a PATCH body applied to C{existing}: given fields
    replace existing ones, nested records (a plugin's C{config}) merge
    field by field, and arrays, sets and maps are replaced whole.

    @return: the complete validated record, C{updated_at} set to C{now}.
    @raise SchemaViolation: listing every bad field.
    """
    _entity(entity)
    errors: dict[str, Any] = {}
    patch = _as_body(patch)
    if entity == "services":
        patch = _expand_url(patch, errors)
    _immutable(patch, existing, errors)
    name = patch["name"] if "name" in patch else existing.get("name")
    schema = _schema(entity, name, plugins, errors)
    merged = schema.merge(existing, patch)
    merged["id"] = existing["id"]
    merged["created_at"] = existing["created_at"]
    merged["updated_at"] = now
    return _validate(schema, merged, errors)
