"""
What the Admin API stores for a write: the functions that turn a request
body into a complete record validated by its entity's schema
(L{echogate.entities.schemas}), for a POST (L{prepare_insert}), a PUT
(L{prepare_replace}) or a PATCH (L{prepare_update}), and the schema a form
body is typed by (L{form_schema}).

Where echogate differs from Kong:

  - a service's C{port} defaults to 443 when its C{protocol} is https or
    grpcs (also in the C{url} shorthand: C{grpcs://host} is port 443,
    where Kong gives 80).
  - C{url} together with C{protocol}, C{host}, C{port} or C{path} is an
    error, as is a C{url} with credentials, a query or a fragment.
  - C{id} and C{created_at} cannot be changed by PUT or PATCH.
  - a plugin entity naming a plugin that is not installed on the node is
    told apart from one naming an installed plugin that is not enabled
    (L{unknown_plugin}).

Upstreams and targets take Kong's on-write steps from
L{echogate.entities.upstreams}: the C{algorithm}/C{hash_on} shorthands,
and a target stored normalised with its default port (L{format_target}).
A CA certificate's C{cert_digest} is computed from its C{cert} on every
write (L{echogate.entities.certificates.ca_digest}); a certificate's
C{snis} shorthand is validated here and left in the record for the Admin
API to turn into SNI rows.
"""
from __future__ import annotations

import difflib
from typing import Any, Mapping, Sequence
from urllib.parse import urlsplit

from echogate.entities.certificates import ca_digest
from echogate.entities.plugin_entities import entity_type
from echogate.entities.schemas import ENTITIES, PLUGINS, EntityType, plugin_schema
from echogate.entities.upstreams import TARGET_INVALID, format_target, normalize_ip, upstream_shorthands
from echogate.errors import SchemaViolation
from echogate.schema import ENTITY, Record
from echogate.schema.containers import ElementErrors
from echogate.schema.fields import REQUIRED, Field, String, text_problem

__all__ = [
    "form_schema",
    "prepare_insert",
    "prepare_replace",
    "prepare_update",
]

IMMUTABLE = "immutable field cannot be updated"


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
        errors["name"] = unknown_plugin(name, plugins)
    return PLUGINS.with_field("config", Field())


def unknown_plugin(name: str, plugins: Mapping[str, Any]) -> str:
    """
    Why a plugin entity cannot name C{name}, a plugin not in C{plugins}.
    Kong's words when C{plugins} does not say which plugins are installed,
    or when C{name} is installed but not enabled; when it knows them
    (C{plugins.installed}, L{echogate.registry.EnabledPlugins}), a name
    that is not installed is said to be no such plugin, with the closest
    known name.
    """
    installed = getattr(plugins, "installed", None)
    if installed is None or name in installed:
        return f"plugin '{name}' not enabled; add it to the 'plugins' configuration property"
    near = difflib.get_close_matches(name, sorted(set(installed) | set(plugins)), n=1)
    hint = f"; did you mean '{near[0]}'?" if near else ""
    return f"no such plugin: '{name}' is not installed on this node{hint}"


def form_schema(
    entity: str,
    body: Mapping[str, Any] | Sequence[tuple[str, str]],
    plugins: Mapping[str, Any],
    *,
    existing: Mapping[str, Any] | None = None,
) -> Record:
    """
    The schema to type a form body with (see L{echogate.admin.forms.decode_form}).

    @param body: the form's C{(name, value)} pairs, or a dict.
    @param existing: for a PATCH, the record being changed (a plugin's
        C{name} is taken from it when the body has none).
    """
    schema = _entity(entity, plugins).schema
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


def _entity(entity: str, plugins: Mapping[str, Any] | None = None) -> EntityType:
    known = ENTITIES.get(entity)
    if known is not None:
        return known
    # An entity a plugin declares (echogate.entities.plugin_entities).
    return entity_type(entity, plugins)


def _as_body(body: Any) -> dict[str, Any]:
    if not isinstance(body, Mapping):
        raise SchemaViolation({ENTITY: ["expected a record"]})
    return dict(body)


_URL_FIELDS = ("protocol", "host", "port", "path")
#: The service protocols whose port is 443 unless given.
_TLS_SCHEMES = ("https", "grpcs")


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
        port = 443 if parts.scheme in _TLS_SCHEMES else 80
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


def _grpc_route_defaults(body: dict[str, Any]) -> None:
    """
    Kong's C{grpc} subschema's default: a gRPC route (its first protocol
    C{grpc} or C{grpcs}) does not strip its path unless told to (which
    its schema then refuses).
    """
    protocols = body.get("protocols")
    if ("strip_path" not in body and isinstance(protocols, (list, tuple)) and protocols
            and protocols[0] in ("grpc", "grpcs")):
        body["strip_path"] = False


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
    return _entity(entity, plugins).schema


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
    unstorable = _unstorable_fields(result)
    if unstorable:
        raise SchemaViolation(unstorable)
    if "id" in result:
        result["id"] = result["id"].lower()
    if isinstance(result.get("target"), str) and schema is ENTITIES["targets"].schema:
        result["target"] = format_target(result["target"])
    if isinstance(result.get("cert"), str) and schema is ENTITIES["ca_certificates"].schema:
        result["cert_digest"] = ca_digest(result["cert"])
    return result


def _on_write(entity: str, body: dict[str, Any], errors: dict[str, Any], *,
              creating: bool) -> dict[str, Any]:
    """
    Kong's steps before validating an upstream (its shorthands) or a new
    target (an invalid target is reported with the targets DAO's message,
    which does not repeat the value).
    """
    if entity == "upstreams":
        return upstream_shorthands(body)
    if entity == "targets" and creating and isinstance(body.get("target"), str):
        try:
            normalize_ip(body["target"])
        except ValueError:
            errors["target"] = TARGET_INVALID
    return body


def _unstorable(value: Any) -> Any:
    """
    The error for C{value} if some text in it cannot be stored (see
    L{text_problem}), nested like a schema's errors, or C{None}.
    """
    if isinstance(value, str):
        return text_problem(value)
    if isinstance(value, Mapping):
        return _unstorable_fields(value) or None
    if isinstance(value, (list, tuple)):
        errors = ElementErrors()
        for index, item in enumerate(value, 1):
            problem = _unstorable(item)
            if problem:
                errors[str(index)] = problem
        return errors or None
    return None


def _unstorable_fields(record: Mapping[Any, Any]) -> dict[str, Any]:
    errors: dict[str, Any] = {}
    for key, value in record.items():
        name = str(key)
        problem = text_problem(name) if isinstance(key, str) else None
        if problem:
            errors[name] = problem
            continue
        problem = _unstorable(value)
        if problem:
            errors[name] = problem
    return errors


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
    return prepare_replace(entity, body, existing=None, plugins=plugins, now=now, new_id=new_id)


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
    _entity(entity, plugins)
    errors: dict[str, Any] = {}
    body = _as_body(body)
    if entity == "services":
        body = _expand_url(body, errors)
        if "port" not in body and body.get("protocol") in _TLS_SCHEMES:
            body["port"] = 443
    elif entity == "routes":
        _grpc_route_defaults(body)
    body = _on_write(entity, body, errors, creating=existing is None)
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
    _entity(entity, plugins)
    errors: dict[str, Any] = {}
    patch = _as_body(patch)
    if entity == "services":
        patch = _expand_url(patch, errors)
    patch = _on_write(entity, patch, errors, creating=False)
    _immutable(patch, existing, errors)
    name = patch["name"] if "name" in patch else existing.get("name")
    schema = _schema(entity, name, plugins, errors)
    merged = schema.merge(existing, patch)
    merged["id"] = existing["id"]
    merged["created_at"] = existing["created_at"]
    merged["updated_at"] = now
    return _validate(schema, merged, errors)
