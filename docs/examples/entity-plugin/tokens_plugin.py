"""
An example plugin with its own entity: consumers' API tokens, kept by the
gateway (C{/tokens}, C{/consumers/{c}/tokens}), looked up in C{access}
in the configuration snapshot, never in the database.
"""
from __future__ import annotations

from typing import Any

from echogate.plugin import GatewayPlugin, PluginEntity
from echogate.schema import Record
from echogate.schema.fields import String

#: The entity: a token, unique, belonging to a consumer (deleted with it).
TOKENS = PluginEntity(
    name="example_tokens",
    schema=Record({
        "token": String(required=True, description="The token a client sends in X-Token."),
        "label": String(description="What the token is for."),
    }),
    endpoint="tokens",
    parent="consumers",
    unique=("token",),
    endpoint_key="token",
    description="A consumer's API token.",
)


class TokenAuth(GatewayPlugin):
    """
    Answer 401 unless the request's C{X-Token} is a stored token; tell the
    client whose it is (C{X-Token-Consumer}).
    """

    name = "token-auth"
    version = "1.0.0"
    priority = 1250
    config_schema = Record({})
    entities = (TOKENS,)

    def access(self, ctx: Any, config: Any) -> None:
        token = ctx.credentials.entities(TOKENS.name).find("token", ctx.request.get_header("X-Token"))
        if token is None:
            ctx.exit(401, {"message": "unknown token"})
            return
        ctx.plugin["consumer"] = token["consumer"]["id"]

    def header_filter(self, ctx: Any, config: Any) -> None:
        if "consumer" in ctx.plugin:
            ctx.response.set_header("X-Token-Consumer", ctx.plugin["consumer"])
