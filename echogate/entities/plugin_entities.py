"""
The entities plugins own (L{echogate.pdk.entities.PluginEntity}, declared in
a plugin's C{entities}) beside the core ones (L{echogate.entities.schemas.ENTITIES}):
L{declarations} gathers and checks them, L{entity_type} is what the Admin
API and L{echogate.entities.writes} validate a record of any entity with.

The bundled credential entities are declared the same way (by key-auth,
basic-auth, jwt and acl) and are always in C{ENTITIES}, with tables of
their own, so that their endpoints exist whichever plugins are loaded, as
they always have.
"""
from __future__ import annotations

from typing import Any, Mapping

from echogate.entities.schemas import ENTITIES, EntityType, declared_type
from echogate.pdk.entities import PluginEntity
from echogate.pdk.entities import declare_storage as pdk_declare_storage

__all__ = ["ConflictingEntity", "declarations", "declare_storage", "entity_type", "entity_types",
           "by_endpoint"]


class ConflictingEntity(ValueError):
    """
    Two plugins (or a plugin and the core) declare the same entity name
    or endpoint.
    """


#: id of a declaration -> (the declaration, its type): built once.
_TYPES: dict[int, tuple[PluginEntity, EntityType]] = {}

#: The endpoints the core serves at the top level (a plugin entity cannot take them).
_CORE_ENDPOINTS = frozenset({
    "services", "routes", "consumers", "plugins", "upstreams", "targets", "certificates", "snis",
    "ca_certificates", "tags", "schemas", "status", "metrics", "endpoints", "config", "cache",
    "timers", "clustering", "debug", "key-auths", "basic-auths", "jwts", "acls",
})


def _type(declaration: PluginEntity) -> EntityType:
    known = _TYPES.get(id(declaration))
    if known is None or known[0] is not declaration:
        known = _TYPES[id(declaration)] = (declaration, declared_type(declaration))
    return known[1]


def declarations(plugins: Mapping[str, Any]) -> tuple[PluginEntity, ...]:
    """
    The entities the plugins in C{plugins} declare that the core does not
    already know (the bundled credential entities are in C{ENTITIES}), in
    the plugins' order.

    @raise ConflictingEntity: two declare one name or endpoint, or one
        takes a core entity's name or endpoint.
    @raise TypeError: a plugin's C{entities} holds something else than
        L{PluginEntity}.
    """
    found: dict[str, PluginEntity] = {}
    endpoints: dict[str, str] = {}
    for plugin_name, plugin in plugins.items():
        for declaration in getattr(plugin, "entities", ()) or ():
            if not isinstance(declaration, PluginEntity):
                raise TypeError(f"plugin {plugin_name!r}: entities must be PluginEntity, not {declaration!r}")
            core = ENTITIES.get(declaration.name)
            if core is not None:
                if core.declaration is declaration:
                    continue
                raise ConflictingEntity(f"plugin {plugin_name!r}: entity {declaration.name!r} already exists")
            if declaration.table is not None:
                raise ConflictingEntity(f"plugin {plugin_name!r}: entity {declaration.name!r} names a table;"
                                        " only the bundled entities have tables of their own")
            if declaration.name in found and found[declaration.name] is not declaration:
                raise ConflictingEntity(f"plugin {plugin_name!r}: entity {declaration.name!r} is declared twice")
            if declaration.endpoint in _CORE_ENDPOINTS or endpoints.get(declaration.endpoint,
                                                                        declaration.name) != declaration.name:
                raise ConflictingEntity(f"plugin {plugin_name!r}: endpoint {declaration.endpoint!r} is taken")
            found[declaration.name] = declaration
            endpoints[declaration.endpoint] = declaration.name
    return tuple(found.values())


def entity_types(plugins: Mapping[str, Any]) -> dict[str, EntityType]:
    """
    Every entity: the core's and those the plugins declare, by name.
    """
    types = dict(ENTITIES)
    for declaration in declarations(plugins):
        types[declaration.name] = _type(declaration)
    return types


def entity_type(entity: str, plugins: Mapping[str, Any] | None = None) -> EntityType:
    """
    The type of C{entity}, a core entity or one a plugin in C{plugins}
    declares.

    @raise ValueError: no such entity.
    """
    known = ENTITIES.get(entity)
    if known is not None:
        return known
    for plugin in (plugins or {}).values():
        for declaration in getattr(plugin, "entities", ()) or ():
            if isinstance(declaration, PluginEntity) and declaration.name == entity:
                return _type(declaration)
    raise ValueError(f"unknown entity {entity!r}")


def by_endpoint(plugins: Mapping[str, Any]) -> dict[str, PluginEntity]:
    """
    Every declared entity (the bundled credentials' included) by its
    top-level endpoint and by its nested one, each prefixed: C{"/key-auths"}
    and C{"consumers/key-auth"}.
    """
    found: dict[str, PluginEntity] = {}
    every = [t.declaration for t in ENTITIES.values() if t.declaration is not None]
    for declaration in (*every, *declarations(plugins)):
        found["/" + declaration.endpoint] = declaration
        if declaration.parent is not None:
            found[f"{declaration.parent}/{declaration.nested}"] = declaration
    return found



def declare_storage(store: Any, plugins: Mapping[str, Any]) -> None:
    """
    Check the plugins' declarations (L{declarations}), then tell C{store}
    how to keep them (L{echogate.pdk.entities.declare_storage}).

    @raise ConflictingEntity: see L{declarations}.
    """
    declarations(plugins)
    pdk_declare_storage(store, plugins)
