"""
An example plugin: token introspection (RFC 7662) against another
service, with the answers cached on the node, and the accepted audiences
rebuilt by the C{configure} phase. See README.md.
"""
from __future__ import annotations

from typing import Any

import attrs

from echogate.pdk.http import CallFailed
from echogate.plugin import GatewayPlugin, NodeBinding
from echogate.schema import Array, Number, Record, String


@attrs.frozen
class Introspection(GatewayPlugin):
    """
    Accepts a request whose C{Authorization: Bearer <token>} the
    introspection endpoint says is active, for an audience that some
    config of this plugin allows.
    """

    binding: NodeBinding = attrs.field(factory=NodeBinding)
    #: What configure derives from every config: the allowed audiences.
    audiences: set[str] = attrs.field(factory=set)

    name = "introspection"
    version = "1.0.0"
    priority = 1500
    config_schema = Record({
        "url": String(required=True),
        "audience": Array(String(), default=[]),
        "timeout": Number(default=2.0),
        "ttl": Number(default=300),
    })

    def node_service(self, node: Any) -> None:
        self.binding.bind(node)

    def configure(self, configs: Any) -> None:
        # Rebuilt whenever this plugin's configs change.
        self.audiences.clear()
        for config in configs:
            self.audiences.update(config["audience"])

    async def access(self, ctx: Any, config: Any) -> None:
        header = ctx.request.get_header("Authorization") or ""
        if not header.startswith("Bearer "):
            ctx.exit(401, {"message": "a bearer token is required"})
            return
        token = header[len("Bearer "):]
        node = self.binding.node
        cache = node.cache("introspection", ttl=300, neg_ttl=30)
        try:
            claims = await cache.get(token, self._introspect, node, config, token)
        except CallFailed:
            ctx.exit(503, {"message": "the token cannot be checked now"})
            return
        if claims is None or claims.get("aud") not in self.audiences:
            ctx.exit(401, {"message": "the token is not valid here"})
            return
        ctx.upstream.set_header("X-Subject", claims.get("sub", ""))

    async def _introspect(self, node: Any, config: Any, token: str) -> dict[str, Any] | None:
        response = await node.http.post(
            config["url"], headers={"Content-Type": "application/x-www-form-urlencoded"},
            body=f"token={token}", timeout=config["timeout"])
        if response.code != 200:
            raise CallFailed(config["url"], f"answered {response.code}")
        claims: dict[str, Any] = response.json()
        return claims if claims.get("active") else None
