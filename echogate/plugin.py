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

from echogate.interfaces import IGatewayPlugin


class ImmutablePluginError(AttributeError):
    """
    Something tried to assign an attribute on a plugin object.
    """


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
    """

    name: str = ""
    version: str = "0.1.0"
    priority: int = 0
    config_schema: Any = None
    reads_body: Any = False

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
