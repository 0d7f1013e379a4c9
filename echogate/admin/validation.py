"""
Validating an entity without writing it, registered on
L{echogate.admin.api.AdminAPI}'s Klein application by L{register}, as
Kong 3 serves it:

  - C{POST /schemas/{entity}/validate}: the body (JSON or a form, as a
    C{POST /{entity}} takes it) is checked as a new record of C{entity}
    would be (L{echogate.entities.writes.prepare_insert}), nothing is
    stored: 200 C{{"message": "schema validation successful"}}, or the
    400 schema violation a C{POST} would answer; 404 C{{"message": "No
    entity named '...'"}} for an entity there is none of (the core's and
    those the loaded plugins declare are known: L{entity_kind});
  - C{POST /schemas/plugins/validate}: the same for a plugin, whose
    C{config} is checked by the plugin named in the body.

Only the record itself is judged: that its foreign keys reference
existing entities, or that its unique fields are free, is not (Kong does
not check them either).
"""
from __future__ import annotations

import uuid
from typing import Any, Mapping

from klein import Klein
from twisted.web.iweb import IRequest

from echogate.admin.responses import json_response
from echogate.entities import writes
from echogate.entities.plugin_entities import entity_type
from echogate.entities.schemas import EntityType

VALID = {"message": "schema validation successful"}


def entity_kind(entity: str, plugins: Mapping[str, Any]) -> EntityType | None:
    """
    The type of C{entity}, a core entity or one a plugin of C{plugins}
    declares (by its name, as Kong names a custom DAO's schema:
    C{/schemas/example_tokens}), or C{None}.
    """
    try:
        return entity_type(entity, plugins)
    except ValueError:
        return None


def _validate(admin: Any, request: IRequest, entity: str) -> bytes:
    """
    Check the body as a new C{entity}.

    @raise SchemaViolation: listing every bad field (answered 400).
    """
    if entity_kind(entity, admin._plugins) is None:
        return json_response(request, {"message": f"No entity named '{entity}'"}, 404)
    fields = admin._fields(entity, request)
    writes.prepare_insert(entity, fields, plugins=admin._plugins, now=admin._now(),
                          new_id=str(uuid.uuid4()))
    return json_response(request, VALID)


def register(app: Klein) -> None:
    """
    Add C{/schemas/{entity}/validate} and C{/schemas/plugins/validate} to
    C{app}, the L{AdminAPI}'s application.
    """

    @app.route("/schemas/plugins/validate", methods=["POST"], endpoint="validate_plugin")
    def validate_plugin(admin: Any, request: IRequest) -> bytes:
        return _validate(admin, request, "plugins")

    @app.route("/schemas/<entity>/validate", methods=["POST"], endpoint="validate_entity")
    def validate_entity(admin: Any, request: IRequest, entity: str) -> bytes:
        return _validate(admin, request, entity)
