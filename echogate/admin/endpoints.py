"""
C{GET /endpoints}, registered on L{echogate.admin.api.AdminAPI}'s Klein
application by L{register}: the Admin API's own paths, read from the
application's routing map (so the list is true of whatever is
registered), in Kong 3's shape C{{"data": ["/", "/services", ...]}}.

Each rule of the map becomes one path per alternative of its C{any(...)}
parts (C{/<any(services, routes):entity>} is C{/services} and C{/routes}).
A variable part is written C{{name}}: named after the collection before it
when that collection's path is itself an endpoint (C{/services/{services}},
C{/services/{services}/routes/{routes}}, C{/tags/{tags}}, as Kong names
them), by its own name otherwise (C{/schemas/{entity}}). Paths are sorted
as Kong sorts them, segment by segment (C{/a/z} before C{/ab}).

The rules of the entities plugins declare match any name
(L{echogate.admin.plugin_entities}); they are listed as the paths of each
entity the loaded plugins declare (C{/tokens}, C{/tokens/{tokens}},
C{/consumers/{consumers}/tokens}, ...), and not at all when none does.
"""
from __future__ import annotations

import itertools
import re
from typing import Any, Iterable, Iterator

from klein import Klein
from twisted.web.iweb import IRequest
from werkzeug.routing import Map

from echogate.admin.responses import json_response
from echogate.pdk.entities import PluginEntity

#: One variable part of a rule: C{<name>}, C{<converter:name>} or
#: C{<converter(arguments):name>}.
_VARIABLE = re.compile(r"^<(?:(?P<converter>\w+)(?:\((?P<arguments>[^)]*)\))?:)?(?P<name>\w+)>\Z")

#: A part of a path: (C{True}, a variable's name) or (C{False}, literal text).
_Part = tuple[bool, str]


def _alternatives(arguments: str) -> list[str]:
    return [item.strip().strip("'\"") for item in arguments.split(",") if item.strip()]


def _expand(rule: str) -> Iterator[tuple[_Part, ...]]:
    """
    Every path C{rule} matches, as parts, one per segment.
    """
    choices: list[list[_Part]] = []
    for segment in rule.strip("/").split("/") if rule != "/" else []:
        match = _VARIABLE.match(segment)
        if match is None:
            choices.append([(False, segment)])
        elif match["converter"] == "any":
            choices.append([(False, item) for item in _alternatives(match["arguments"] or "")])
        else:
            choices.append([(True, match["name"])])
    yield from itertools.product(*choices)


def _shape(parts: Iterable[_Part]) -> tuple[str | None, ...]:
    """
    C{parts} with every variable alike, to compare paths by.
    """
    return tuple(None if variable else text for variable, text in parts)


def _written(parts: tuple[_Part, ...], shapes: set[tuple[str | None, ...]]) -> str:
    segments = []
    for index, (variable, text) in enumerate(parts):
        if not variable:
            segments.append(text)
            continue
        name = text
        if index > 0 and not parts[index - 1][0] and _shape(parts[:index]) in shapes:
            name = parts[index - 1][1]
        segments.append("{" + name + "}")
    return "/" + "/".join(segments)


#: A plugin entity's collection in a rule (L{echogate.admin.plugin_entities}).
_ENTITY = re.compile(r"<plugin_entity:\w+>")
#: The parent collection in a nested rule of a plugin entity.
_PARENT = re.compile(r"<any\([^)]*\):parent>")
#: The parent's field in the rule of C{/{endpoint}/{key}/{parent field}}.
_PARENT_FIELD = re.compile(r"<any\([^)]*\):field>")


def _entity_rules(rule: str, declared: Iterable[PluginEntity]) -> Iterator[str]:
    """
    C{rule}, a rule of the plugin entities' endpoints, as the rule of each
    entity of C{declared} it serves.
    """
    for declaration in declared:
        if _PARENT.search(rule):
            if declaration.parent is None:
                continue
            yield _ENTITY.sub(declaration.nested, _PARENT.sub(declaration.parent, rule))
        elif _PARENT_FIELD.search(rule):
            if declaration.parent_field is None:
                continue
            yield _ENTITY.sub(declaration.endpoint, _PARENT_FIELD.sub(declaration.parent_field, rule))
        else:
            yield _ENTITY.sub(declaration.endpoint, rule)


def endpoints(url_map: Map, declared: Iterable[PluginEntity] = ()) -> list[str]:
    """
    The paths the rules of C{url_map} serve, written and sorted as
    Kong's C{GET /endpoints} lists them.

    @param declared: the entities the loaded plugins declare (those with
        no table of their own), whose paths the rules that match any
        entity's name stand for.
    """
    declared = tuple(declared)
    rules: list[str] = []
    for rule in url_map.iter_rules():
        if _ENTITY.search(rule.rule):
            rules.extend(_entity_rules(rule.rule, declared))
        else:
            rules.append(rule.rule)
    expanded = {parts for rule in rules for parts in _expand(rule)}
    shapes = {_shape(parts) for parts in expanded}
    paths = {_written(parts, shapes) for parts in expanded}
    return sorted(paths, key=lambda path: path.replace("/", "\x00"))


def register(app: Klein) -> None:
    """
    Add C{GET /endpoints} to C{app}, the L{AdminAPI}'s application.
    """

    @app.route("/endpoints", methods=["GET"], endpoint="endpoints")
    def list_endpoints(admin: Any, request: IRequest) -> bytes:
        declared = {id(d): d for d in admin._entity_endpoints.values() if d.table is None}
        return json_response(request, {"data": endpoints(app.url_map, declared.values())})
