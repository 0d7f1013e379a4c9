"""
What the store gives the data plane: every stored entity the proxy needs,
read in one transaction (L{ConfigurationData}). The data plane compiles it
into a snapshot (L{echogate.proxy.snapshot}); the store knows nothing of
routers or plugin plans.
"""
from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen
class ConfigurationData:
    """
    Every stored entity the data path needs, read in one transaction.

    @ivar version: the configuration version these rows belong to.
    @ivar services: service records (Kong-shaped dicts).
    @ivar routes: route records.
    @ivar plugins: plugin records.
    @ivar consumers: consumer records.
    @ivar keyauth_credentials: key-auth credentials (and so on for the
        other credential entities of L{echogate.entities.credentials}).
    @ivar upstreams: upstream records (L{echogate.entities.upstreams}).
    @ivar targets: target records (each names its C{upstream}).
    @ivar target_health_overrides: the health set through the Admin API
        (L{echogate.admin.health.health_override}), one per target and
        address.
    @ivar certificates: certificate records (L{echogate.entities.certificates};
        without the C{snis} shorthand).
    @ivar snis: SNI records (each names its C{certificate}).
    @ivar ca_certificates: CA certificate records.
    @ivar plugin_entities: the records of the entities plugins declare
        (L{echogate.pdk.entities.PluginEntity}), each as C{{"entity": name,
        "record": record}}, by creation time.
    """

    version: int
    services: tuple[dict[str, Any], ...] = ()
    routes: tuple[dict[str, Any], ...] = ()
    plugins: tuple[dict[str, Any], ...] = ()
    consumers: tuple[dict[str, Any], ...] = ()
    keyauth_credentials: tuple[dict[str, Any], ...] = ()
    basicauth_credentials: tuple[dict[str, Any], ...] = ()
    jwt_secrets: tuple[dict[str, Any], ...] = ()
    acls: tuple[dict[str, Any], ...] = ()
    upstreams: tuple[dict[str, Any], ...] = ()
    targets: tuple[dict[str, Any], ...] = ()
    target_health_overrides: tuple[dict[str, Any], ...] = ()
    certificates: tuple[dict[str, Any], ...] = ()
    snis: tuple[dict[str, Any], ...] = ()
    ca_certificates: tuple[dict[str, Any], ...] = ()
    plugin_entities: tuple[dict[str, Any], ...] = ()
