"""
Errors that reach users, each knowing its Kong-shaped JSON body.

The admin application turns any L{GatewayError} into
C{{"code", "name", "message", "fields"}} with the error's HTTP status, in
one place (C{handle_errors}); the proxy uses L{ProxyError} for the plain
C{{"message": ...}} answers of the data path.
"""
from __future__ import annotations

from typing import Any, Mapping


class GatewayError(Exception):
    """
    An error with an HTTP status and a Kong-shaped JSON body.

    @ivar status: the HTTP status code to answer with.
    @ivar code: Kong's numeric error code (C{None} for plain messages).
    @ivar name: Kong's error name, e.g. C{"schema violation"}.
    @ivar fields: field name to message (nested dicts for nested fields).
    """

    status = 500
    code: int | None = None
    name: str | None = None

    def __init__(self, message: str, fields: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.fields = dict(fields) if fields is not None else None

    def body(self) -> dict[str, Any]:
        """
        The JSON-ready body of this error.
        """
        if self.code is None:
            return {"message": self.message}
        body: dict[str, Any] = {"code": self.code, "name": self.name, "message": self.message}
        if self.fields is not None:
            body["fields"] = self.fields
        return body


def _flatten(fields: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key, value in fields.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.extend(_flatten(value, name + "."))
        elif isinstance(value, list):
            for item in value:
                out.append((name, str(item)))
        else:
            out.append((name, str(value)))
    return out


class SchemaViolation(GatewayError):
    """
    One or more fields failed validation (400, code 2).

    @param fields: field name to message; nested records nest dicts, so
        C{{"config": {"x": "unknown field"}}} reads C{config.x} in the
        message.
    """

    status = 400
    code = 2
    name = "schema violation"

    def __init__(self, fields: Mapping[str, Any], message: str | None = None):
        if message is None:
            flat = _flatten(fields)
            parts = "; ".join(f"{name}: {msg}" for name, msg in flat)
            if len(flat) == 1:
                message = f"schema violation ({parts})"
            else:
                message = f"{len(flat)} schema violations ({parts})"
        super().__init__(message, fields)


class PrimaryKeyViolation(GatewayError):
    status = 400
    code = 3
    name = "primary key violation"


class ForeignKeyViolation(GatewayError):
    """
    A foreign key names a missing entity, or an entity is still referenced (400, code 4).
    """

    status = 400
    code = 4
    name = "foreign key violation"


class UniqueViolation(GatewayError):
    """
    A unique field's value is taken (409, code 5).

    @param fields: the unique fields and the values that clashed.
    """

    status = 409
    code = 5
    name = "unique constraint violation"

    def __init__(self, fields: Mapping[str, Any]):
        shown = ", ".join(f'{k}="{v}"' if isinstance(v, str) else f"{k}={v}"
                          for k, v in fields.items())
        super().__init__(f"UNIQUE violation detected on '{{{shown}}}'", fields)


class NotFound(GatewayError):
    """
    An entity addressed by id or name does not exist (404, code 6).
    """

    status = 404
    code = 6
    name = "not found"


class InvalidBody(GatewayError):
    """
    The request body cannot be parsed (400, code 14 "invalid body"? Kong answers a plain message).
    """

    status = 400

    def __init__(self, message: str = "Cannot parse JSON body"):
        super().__init__(message)


class UnsupportedMediaType(GatewayError):
    status = 415

    def __init__(self, message: str = "Unsupported Content-Type"):
        super().__init__(message)


class DatabaseUnavailable(GatewayError):
    """
    The database cannot be reached or did not answer in time (503).
    """

    status = 503

    def __init__(self, message: str = "The database is unavailable; the change was not applied"):
        super().__init__(message)


class ProxyError(GatewayError):
    """
    An answer the proxy makes itself: C{{"message": ...}} with a status.
    """

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class BodyNotRead(RuntimeError):
    """
    A plugin read the request body in C{rewrite} or C{access} without
    declaring C{reads_body}: the body is read only after those phases have
    let the request through, unless a plugin says it needs it first.
    """


NO_ROUTE = "no Route matched with those values"
NO_SERVICE = "no Service found with those values"
BAD_UPSTREAM = "An invalid response was received from the upstream server"
UPSTREAM_TIMEOUT = "The upstream server is timing out"
UNAVAILABLE = "Service unavailable"
