"""
request-stamp: an example echogate plugin, dropped into C{twisted/plugins/}.

It stamps every response with the request's id and the time the gateway
spent on it, forwards the id to the service, and can refuse requests that
lack a header (optionally after a delay, to slow down scanners).

What it shows:

  - a plugin object that never changes (a frozen attrs class based on
    L{GatewayPlugin}); its only field is a L{NodeBinding}, which the node
    fills through C{node_service}: the node's reactor is the plugin's
    clock (in tests, the harness's C{Clock}), never the global reactor;
  - a config schema with defaults, a null default, bounds;
  - per-request state on C{ctx.plugin}, never on C{self};
  - C{access}, C{header_filter} and C{log}; C{access} stays synchronous on
    the common path and becomes asynchronous (C{async def}) only when it
    has to wait.

This module is imported by C{getPlugins} whenever anything looks for
Twisted plugins (C{twistd} does, to list its commands), so it imports
nothing heavy and never the reactor at import time.
"""
from __future__ import annotations

from typing import Any, Mapping

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

from echogate.interfaces import IPluginNode
from echogate.plugin import GatewayPlugin, NodeBinding
from echogate.schema import Boolean, Integer, Number, Record, String


@attrs.frozen
class RequestStamp(GatewayPlugin):
    """
    Stamp responses with C{id=<request id>; ms=<milliseconds spent>}.

    @ivar binding: the node, once C{node_service} gave it; its reactor
        measures and waits.
    """

    binding: NodeBinding = attrs.field(factory=NodeBinding, eq=False, repr=False)

    name = "request-stamp"
    version = "1.0.0"
    priority = 1500
    config_schema = Record({
        "header": String(default="X-Request-Stamp", description="The response header to stamp."),
        "forward_id_as": String(default="X-Request-Id",
                                description="The request header that carries the id upstream; null: none."),
        "required_header": String(description="Refuse requests without this header; null: refuse nothing."),
        "reject_status": Integer(between=(400, 499), default=400,
                                 description="The status of a refusal."),
        "reject_delay": Number(between=(0, 60), default=0,
                               description="Seconds to wait before refusing."),
        "log": Boolean(default=False, description="Log one line per request."),
    })

    def _now(self) -> float:
        return self._clock().seconds()

    def _clock(self) -> IReactorTime:
        reactor: IReactorTime = self.binding.node.reactor
        return reactor

    def node_service(self, node: IPluginNode) -> None:
        """
        Keep C{node}: its reactor is the clock. No service to run.
        """
        self.binding.bind(node)
        return None

    def access(self, ctx: Any, config: Mapping[str, Any]) -> Any:
        ctx.plugin["started"] = self._now()
        required = config["required_header"]
        if required is not None and ctx.request.get_header(required) is None:
            return self._refuse(ctx, config, required)
        if config["forward_id_as"] is not None:
            ctx.upstream.set_header(config["forward_id_as"], ctx.request_id)
        return None

    async def _refuse(self, ctx: Any, config: Mapping[str, Any], required: str) -> None:
        if config["reject_delay"]:
            await deferLater(self._clock(), config["reject_delay"], lambda: None)
        ctx.plugin["refused"] = True
        ctx.exit(config["reject_status"], {"message": f"the {required} header is required"})

    def header_filter(self, ctx: Any, config: Mapping[str, Any]) -> None:
        started = ctx.plugin.get("started")
        spent = 0 if started is None else round((self._now() - started) * 1000)
        ctx.plugin["spent"] = spent
        ctx.response.set_header(config["header"], f"id={ctx.request_id}; ms={spent}")

    def log(self, ctx: Any, config: Mapping[str, Any]) -> None:
        if config["log"]:
            ctx.log.info("{method} {path} -> {status} in {spent} ms{refused}",
                         method=ctx.request.method, path=ctx.request.path, status=ctx.response.status,
                         spent=ctx.plugin.get("spent", 0),
                         refused=" (refused)" if ctx.plugin.get("refused") else "")


requestStamp = RequestStamp()
