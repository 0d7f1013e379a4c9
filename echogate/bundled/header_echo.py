"""
header-echo: copies a request header's value into a response header.

The classic first Kong plugin, with its classic bug designed out: the
value is kept on C{ctx.plugin} (this request's state), never on the
plugin object, which every request in flight shares.
"""
from __future__ import annotations

from typing import Any, Mapping

from echogate.plugin import GatewayPlugin
from echogate.schema import Record, String


class HeaderEcho(GatewayPlugin):
    """
    Echo C{config.requestHeader}'s value back as C{config.responseHeader};
    no request header, no response header.
    """

    name = "header-echo"
    version = "1.0.0"
    priority = 1000
    config_schema = Record(
        {
            "requestHeader": String(default="X-Request-Echo", required=True, len_min=1,
                                    description="The request header to read."),
            "responseHeader": String(default="X-Response-Echo", required=True, len_min=1,
                                     description="The response header to write."),
        }
    )

    def access(self, ctx: Any, config: Mapping[str, Any]) -> None:
        value = ctx.request.get_header(config["requestHeader"])
        if value is not None:
            ctx.plugin["echo"] = value

    def header_filter(self, ctx: Any, config: Mapping[str, Any]) -> None:
        value = ctx.plugin.get("echo")
        if value is not None:
            ctx.response.set_header(config["responseHeader"], value)
