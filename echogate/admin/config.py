"""
C{/config}: a DB-less node's whole configuration, registered on
L{echogate.admin.api.AdminAPI}'s Klein application by L{register}, as Kong
serves it:

  - C{GET /config}: C{{"config": "<the configuration as YAML>"}};
  - C{POST /config}: a new configuration, given as the body (JSON with a
    C{_format_version}, or YAML or JSON text with a C{yaml} or C{text/plain}
    content type) or as the C{config} field of a JSON, form or multipart
    body. It is validated whole (400 with the
    L{DeclarativeError <echogate.declarative.DeclarativeError>}'s body,
    flattened with C{?flatten_errors=1}), then swapped in at once: the
    answer (201, the entities by name and id) comes once the proxy serves
    it. With C{?check_hash=1}, a configuration whose hash is the current
    one's is not applied: 304.

A node with a database answers both with 400 (Kong's message).
"""
from __future__ import annotations

from typing import Any, Mapping

from klein import Klein
from multipart import parse_options_header
from twisted.web.iweb import IRequest

from echogate.admin.paging import query_arguments
from echogate.admin.responses import json_response
from echogate.declarative import Declarative, DeclarativeError
from echogate.declarative.dbless import DBlessConfiguration
from echogate.pdk.bodies import parse_body, read_limited

__all__ = ["register", "CONFIG_MAX_BODY_SIZE", "ONLY_DBLESS", "NO_CONFIG"]

#: The largest configuration C{POST /config} takes (bytes), whatever the
#: Admin API's limit for other bodies.
CONFIG_MAX_BODY_SIZE = 16 * 1024 * 1024

#: What a node with a database answers (400).
ONLY_DBLESS = {"message": "this endpoint is only available when echogate is configured to not use a database"}

#: What a C{POST /config} without a configuration is answered (400).
NO_CONFIG = {"message": "expected a declarative configuration"}

#: Content types whose body is the configuration's text itself.
_TEXT_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain"})

_TRUE = frozenset({"1", "true", "yes", "on"})


def _given(request: IRequest, limit: int) -> str | bytes | Mapping[str, Any] | None:
    """
    The configuration a C{POST /config} carries: text, parsed data, or
    C{None} when there is none.
    """
    header = request.getHeader(b"content-type")
    content_type = header.decode("latin-1") if isinstance(header, bytes) else (header or "")
    data = read_limited(getattr(request, "content", None), limit)
    media, _ = parse_options_header(content_type)
    if media in _TEXT_TYPES:
        return data if data.strip() else None
    body = parse_body(content_type, data)
    if body.json is not None:
        if "_format_version" in body.json:
            return body.json
        config = body.json.get("config")
    else:
        config = dict(body.pairs or ()).get("config")
    if isinstance(config, (str, Mapping)) and config:
        return config
    return None


def _entities(declarative: Declarative) -> dict[str, dict[str, Any]]:
    """
    What Kong answers a successful C{POST /config} with: each entity's
    records by id (entities without records left out).
    """
    return {entity: {record["id"]: record for record in records}
            for entity, records in declarative.records.items() if records}


def register(app: Klein) -> None:
    """
    Add C{GET /config} and C{POST /config} to C{app}, the L{AdminAPI}'s
    application; they serve its C{dbless} configuration.
    """

    @app.route("/config", methods=["GET"], endpoint="get_config")
    def get_config(admin: Any, request: IRequest) -> bytes:
        dbless: DBlessConfiguration | None = admin._dbless
        if dbless is None:
            return json_response(request, ONLY_DBLESS, 400)
        return json_response(request, {"config": dbless.export()})

    @app.route("/config", methods=["POST"], endpoint="post_config")
    async def post_config(admin: Any, request: IRequest) -> bytes:
        dbless: DBlessConfiguration | None = admin._dbless
        if dbless is None:
            return json_response(request, ONLY_DBLESS, 400)
        query = query_arguments(request.uri)
        given = _given(request, max(admin._max_body_size, CONFIG_MAX_BODY_SIZE))
        if given is None:
            return json_response(request, NO_CONFIG, 400)
        try:
            declarative = dbless.load_data(given) if isinstance(given, Mapping) else dbless.load(given)
        except DeclarativeError as e:
            flatten = query.get("flatten_errors", "").lower() in _TRUE
            return json_response(request, e.flattened_body() if flatten else e.body(), 400)
        if query.get("check_hash", "").lower() in _TRUE and declarative.config_hash == dbless.config_hash:
            request.setResponseCode(304)
            return b""
        dbless.apply(declarative)
        await admin._changed()
        return json_response(request, _entities(declarative), 201)
