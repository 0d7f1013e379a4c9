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
    flattened with C{?flatten_errors=1}; loaded off the reactor thread,
    see L{DBlessConfiguration.load_off_reactor}), then swapped in at once: the
    answer (201, the entities by name and id) comes once the proxy serves
    it. With C{?check_hash=1}, a configuration whose hash is the current
    one's is not applied: 304.

A node with a database answers both with 400 (Kong's message).
"""
from __future__ import annotations

from typing import Any, Mapping, TypeVar

from klein import Klein
from multipart import parse_options_header
from twisted.internet.defer import Deferred
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

_T = TypeVar("_T")


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


async def _update(dbless: DBlessConfiguration, given: str | bytes | Mapping[str, Any],
                  check_hash: bool) -> Declarative | None:
    """
    Load C{given} off the reactor thread (the proxy keeps answering) and
    apply it on it, one configuration at a time, in the order they arrived
    (L{DBlessConfiguration.updating}).

    @param check_hash: leave a configuration whose hash is the applied
        one's unapplied.
    @return: the configuration applied, or C{None} when C{check_hash}
        left it.
    @raise DeclarativeError: C{given} is invalid; nothing is applied.
    """
    async with dbless.updating:
        declarative = await dbless.load_off_reactor(given)
        if check_hash and declarative.config_hash == dbless.config_hash:
            return None
        dbless.apply(declarative)
        return declarative


def _whole(work: Deferred[_T]) -> Deferred[_T]:
    """
    A L{Deferred} of C{work}'s result whose cancelling (Klein cancels a
    handler whose client went away) leaves C{work} running: a configuration
    received whole is applied, as when it loaded on the reactor thread.
    """
    follower: Deferred[_T] = Deferred()
    work.chainDeferred(follower)
    return follower


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
        check_hash = query.get("check_hash", "").lower() in _TRUE
        try:
            declarative = await _whole(Deferred.fromCoroutine(_update(dbless, given, check_hash)))
        except DeclarativeError as e:
            flatten = query.get("flatten_errors", "").lower() in _TRUE
            return json_response(request, e.flattened_body() if flatten else e.body(), 400)
        if declarative is None:
            request.setResponseCode(304)
            return b""
        await admin._changed()
        return json_response(request, _entities(declarative), 201)
