"""
request-size-limiting: refuse request bodies larger than a limit.

A request with C{Content-Length} is judged by it; a chunked request by
the size of the body received. Larger than C{allowed_payload_size}
C{size_unit}s: 413 C{{"message": "Request size limit exceeded"}} (417 when
the client sent C{Expect: 100-continue}). With C{require_content_length},
a request that is neither sized nor chunked gets 411.

A chunked body is read before access runs (and then judged whole),
except on a route that streams bodies (C{request_buffering: false}): there
the limit is checked as the bytes flow
(L{echogate.pdk.messages.ClientRequest.limit_body}): 413
and the connection closed past it, the upstream's too once it was
reached. See docs/plugins/.
"""
from __future__ import annotations

from typing import Any, Mapping

from echogate._version import __version__
from echogate.plugin import GatewayPlugin
from echogate.schema import Boolean, Integer, Record, String

#: Bytes in one of each unit (Kong's binary units).
UNITS = {"megabytes": 1024 * 1024, "kilobytes": 1024, "bytes": 1}

TOO_LARGE = "Request size limit exceeded"
LENGTH_REQUIRED = "A valid Content-Length header is required"


def _content_length(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isdigit() else None


class RequestSizeLimiting(GatewayPlugin):
    """
    Kong's request-size-limiting.
    """

    name = "request-size-limiting"
    version = __version__
    priority = 951
    config_schema = Record({
        "allowed_payload_size": Integer(default=128, description="The largest body allowed, in size_unit."),
        "size_unit": String(required=True, default="megabytes", one_of=tuple(UNITS),
                            description="The unit of allowed_payload_size: megabytes, kilobytes or bytes."),
        "require_content_length": Boolean(required=True, default=False,
                                          description="Refuse (411) requests that are neither sized nor chunked."),
    })

    def reads_body(self, config: Mapping[str, Any], request: Any) -> bool:
        """
        A body of declared length is judged by its head (and refused before
        it is read); a chunked one must be counted: read first, unless the
        route streams it (then counted as it flows).
        """
        return _content_length(request.get_header("content-length")) is None and not request.body_streamed

    def access(self, ctx: Any, config: Mapping[str, Any]) -> None:
        request = ctx.request
        length = _content_length(request.get_header("content-length"))
        if length is None:
            chunked = (request.get_header("transfer-encoding") or "").strip().lower() == "chunked"
            if config["require_content_length"] and not chunked:
                ctx.exit(411, {"message": LENGTH_REQUIRED})
                return
            limit = config["allowed_payload_size"]
            if request.body_streamed:
                # Counted as it flows to the service.
                if limit is not None and not request.limit_body(limit * UNITS[config["size_unit"]]):
                    ctx.exit(413, {"message": TOO_LARGE})
                return
            length = request.body_size
        limit = config["allowed_payload_size"]
        if limit is None:
            return
        if length > limit * UNITS[config["size_unit"]]:
            expect = (request.get_header("expect") or "").strip().lower()
            ctx.exit(417 if expect == "100-continue" else 413, {"message": TOO_LARGE})
