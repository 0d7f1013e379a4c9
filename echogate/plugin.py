"""
The base class for gateway plugins.

A plugin object is created once and shared by every request in flight, so
it is immutable: assigning an attribute on it raises
L{ImmutablePluginError}. The per-request state that a Kong plugin
tutorial keeps on C{self} belongs on C{ctx.plugin} instead::

    class HeaderEcho(GatewayPlugin):
        name = "header-echo"
        version = "1.0.0"
        priority = 1000
        config_schema = Record({"requestHeader": String(default="X-Request-Echo")})

        def access(self, ctx, config):
            ctx.plugin["echo"] = ctx.request.get_header(config["requestHeader"])
"""
from __future__ import annotations

from typing import Any

from zope.interface import implementer

from echogate.interfaces import IGatewayPlugin, IPluginNode
from echogate.pdk.entities import PluginEntity

__all__ = ["GatewayPlugin", "ImmutablePluginError", "NodeBinding", "NodeNotBound", "PluginEntity"]


class ImmutablePluginError(AttributeError):
    """
    Something tried to assign an attribute on a plugin object.

    @since: 0.1.0
    """


class NodeNotBound(RuntimeError):
    """
    A plugin needed its node (L{IPluginNode}) before the node's
    C{node_service} hook gave it one.

    @since: 0.1.0
    """


class NodeBinding:
    """
    Where an immutable plugin object keeps the node it runs in: hold one
    as an attribute made with the object (an C{attrs.field(factory=NodeBinding)}),
    fill it from the C{node_service(node)} hook, read C{binding.node} in
    the phases::

        @attrs.frozen
        class Stamp(GatewayPlugin):
            binding: NodeBinding = attrs.field(factory=NodeBinding)
            ...
            def node_service(self, node):
                self.binding.bind(node)
                return None

            def access(self, ctx, config):
                ctx.upstream.set_header("X-Seen", str(self.binding.node.reactor.seconds()))

    A plugin object loaded by several nodes in one process (tests) holds
    the last one.

    @since: 0.1.0
    """

    def __init__(self) -> None:
        self._node: IPluginNode | None = None

    def bind(self, node: IPluginNode) -> None:
        """
        Hold C{node}.
        """
        self._node = node

    @property
    def bound(self) -> bool:
        """
        Whether a node was given.
        """
        return self._node is not None

    @property
    def node(self) -> IPluginNode:
        """
        The node given to L{bind}.

        @raise NodeNotBound: no node was given yet.
        """
        if self._node is None:
            raise NodeNotBound("the plugin has no node yet: it is given one by the node's (or the"
                               " GatewayHarness's) call of its node_service(node) hook")
        return self._node

    def __repr__(self) -> str:
        return f"<NodeBinding {'bound' if self._node is not None else 'unbound'}>"


@implementer(IGatewayPlugin)
class GatewayPlugin:
    """
    Base class for plugins: declare C{name}, C{version}, C{priority} and
    C{config_schema} as class attributes and define any of the phases
    (C{init}, C{rewrite}, C{access}, C{header_filter}, C{body_filter},
    C{log}); see L{echogate.interfaces.IPluginPhases}.

    Instances cannot be changed after construction; keep request data on
    C{ctx.plugin} or C{ctx.shared}.

    C{reads_body}: whether the plugin's C{rewrite} or C{access} reads the
    request body (C{ctx.request.body()}, C{body_size}). The gateway routes
    and authorises a request on its head, before its body is read, so that
    a refused request never has its body read; a plugin that needs the
    body says so, as C{True} or as a method C{reads_body(config, request)}
    (C{request} is C{ctx.request}, its headers known), and the phase runs
    once the body is here. The default is C{False}: reading the body in
    those phases without saying so raises L{echogate.errors.BodyNotRead}.

    C{no_consumer}: C{True} makes the Admin API refuse a config of this
    plugin scoped to a consumer (the authentication plugins).

    C{node_service(node)}: an optional method the node calls once, before
    C{init} and before it serves, with its L{echogate.interfaces.IPluginNode}
    (the reactor, a thread-pool runner, the node id, the database); keep
    the node in a L{NodeBinding}; return an C{IService} to run with the
    node, or C{None}.

    C{idle_phases(config)}: an optional method naming the phases that do
    nothing with C{config} (an iterable of phase names): a request's plan
    leaves them out for that config (not for a config resolved per
    consumer), so that a phase that would return at once costs nothing.

    C{entities}: the entities the plugin owns (Kong's custom DAOs), a
    tuple of L{PluginEntity} (since 0.2.0): the gateway stores them, serves
    them in the Admin API and in the declarative format, and gives their
    records to the phases (C{ctx.credentials.entities(name)}); see
    C{docs/plugins.md}, "A plugin with its own entity".

    @since: 0.1.0
    """

    name: str = ""
    version: str = "0.1.0"
    priority: int = 0
    config_schema: Any = None
    reads_body: Any = False
    entities: tuple[PluginEntity, ...] = ()

    def __setattr__(self, attribute: str, value: Any) -> None:
        raise ImmutablePluginError(
            f"plugin {self.name!r} is shared by every request in flight and cannot"
            f" be changed (tried to set {attribute!r}); keep per-request state on"
            f" ctx.plugin or ctx.shared"
        )

    def __delattr__(self, attribute: str) -> None:
        raise ImmutablePluginError(
            f"plugin {self.name!r} is shared by every request and cannot be changed"
            f" (tried to delete {attribute!r})"
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.version}>"
