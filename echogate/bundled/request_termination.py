"""
request-termination: answer every request (or only the triggered ones)
with a fixed response, without calling the service.

The answer is C{{"message": message}} (a default message for the common
statuses), or a raw C{body} with its C{content_type}, or, with C{echo},
a JSON copy of the request for debugging. With C{trigger} set, only
requests carrying that header or query argument are answered.
"""
from __future__ import annotations

import json
import os
import socket
from typing import Any, Mapping

import attrs

from echogate._version import __version__
from echogate.bundled.transforms import is_header_name
from echogate.errors import SchemaViolation
from echogate.plugin import GatewayPlugin
from echogate.schema import ENTITY, Boolean, Integer, Record, String

#: Kong's default messages by status.
DEFAULT_MESSAGES = {
    401: "Unauthorized",
    404: "Not found",
    405: "Method not allowed",
    500: "An unexpected error occurred",
    502: "Bad Gateway",
    503: "Service unavailable",
}


def _check_config(config: Mapping[str, Any]) -> str | None:
    """
    Kong's rules between fields: a message excludes a raw body, a content
    type needs a body, echo excludes a raw body.
    """
    message, content_type, body = config.get("message"), config.get("content_type"), config.get("body")
    if message and (content_type or body):
        return "message cannot be used with content_type or body"
    if content_type and not body:
        return "content_type requires a body"
    if config.get("echo") and (content_type or body):
        return "echo cannot be used with content_type and body"
    return None


def _check_trigger(value: str) -> str | None:
    if is_header_name(value):
        return None
    return f"bad header name '{value}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"


@attrs.frozen
class _ConfigRecord(Record):
    """
    A L{Record} whose own C{check} also runs when it is validated at the
    top level (C{Record.validate} runs C{checks} but not C{check}); as a
    plugin's C{config} field, the check's message reads C{config: ...}
    like Kong's.
    """

    def validate(self, value: Any, *, partial: bool = False) -> dict[str, Any]:
        out = super().validate(value, partial=partial)
        if not partial and self.check is not None:
            message = self.check(out)
            if message:
                raise SchemaViolation({ENTITY: [message]})
        return out


def _headers(ctx: Any) -> dict[str, Any]:
    return {name: values[0] if len(values) == 1 else values for name, values in ctx.request.get_headers().items()}


def _query(ctx: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, values in ctx.request.query_args.items():
        out[name] = values[0] if len(values) == 1 else list(values)
    return out


class RequestTermination(GatewayPlugin):
    """
    Kong's request-termination.
    """

    name = "request-termination"
    version = __version__
    priority = 2
    config_schema = _ConfigRecord({
        "status_code": Integer(required=True, default=503, between=(100, 599),
                               description="The status to answer with."),
        "message": String(description="The message of the default JSON answer."),
        "content_type": String(description="The Content-Type of body."),
        "body": String(description="A raw body to answer with instead of a message."),
        "echo": Boolean(required=True, default=False,
                        description="Answer with a JSON copy of the request (for debugging)."),
        "trigger": String(check=_check_trigger,
                          description="Answer only requests with this header or query argument."),
    }, check=_check_config)

    def reads_body(self, config: Mapping[str, Any], request: Any) -> bool:
        """
        Only an echo shows the body.
        """
        return bool(config["echo"])

    def access(self, ctx: Any, config: Mapping[str, Any]) -> None:
        trigger = config["trigger"]
        if trigger is not None and ctx.request.get_header(trigger) is None \
                and trigger not in ctx.request.query_args:
            return
        status = config["status_code"]
        if config["echo"]:
            ctx.exit(status, self._echo(ctx, config["message"] or DEFAULT_MESSAGES.get(status)))
            return
        if config["body"] is not None:
            headers = {"Content-Type": config["content_type"]} if config["content_type"] else {}
            ctx.exit(status, config["body"].encode("utf-8"), headers)
            return
        message = config["message"] or DEFAULT_MESSAGES.get(status)
        ctx.exit(status, {"message": message} if message is not None else None)

    def _echo(self, ctx: Any, message: str | None) -> dict[str, Any]:
        request = ctx.request
        raw = request.body()
        body: Any = None
        content_type = (request.get_header("content-type") or "").lower()
        if raw and "json" in content_type:
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                body = None
        return {
            "message": message,
            "echogate": {"node_id": None, "worker_pid": os.getpid(), "hostname": socket.gethostname()},
            "request": {
                "scheme": request.scheme,
                "host": request.host,
                "port": request.port,
                "headers": _headers(ctx),
                "query": _query(ctx),
                "body": body,
                "raw_body": raw.decode("utf-8", "replace") if raw else None,
                "method": request.method,
                "path": request.path,
            },
            "matched_route": ctx.route,
            "matched_service": ctx.service,
        }
