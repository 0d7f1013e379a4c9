"""
How the Admin API answers: every body is JSON encoded here, and every
failure becomes a Kong-shaped JSON error here.

A Klein route that returns a dict answers 200 with an empty body, so the
routes return what L{json_response} or L{no_content} return, never a dict.
"""
from __future__ import annotations

import json
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.exceptions import NotFound as NoSuchPath

from echogate.errors import GatewayError, SchemaViolation
from echogate.schema.containers import ElementErrors

JSON_CONTENT_TYPE = b"application/json; charset=utf-8"

NOT_FOUND = {"message": "Not found"}
METHOD_NOT_ALLOWED = {"message": "Method not allowed"}
UNEXPECTED = {"message": "An unexpected error occurred"}

_log = Logger(namespace="echogate.admin")


def encode(body: Any) -> bytes:
    """
    Encode a JSON-ready value as compact UTF-8 JSON. Text that is not
    UTF-8 (a lone surrogate, which a JSON body may carry as C{"\\ud800"}
    and an error message may repeat) is sent as a C{\\u} escape instead
    of failing the answer.
    """
    try:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(body, ensure_ascii=True, separators=(",", ":"),
                          allow_nan=False).encode("ascii")


def kong_fields(fields: Any) -> Any:
    """
    A schema violation's C{fields} in Kong's shape: the errors of an
    array's elements (L{ElementErrors}, C{{"2": "..."}}) become an array
    with C{null} for each good element (C{[null, "..."]}); records and
    maps stay objects.
    """
    if isinstance(fields, ElementErrors):
        shaped = fields.as_list()
        if isinstance(shaped, list):
            return [kong_fields(item) for item in shaped]
        return {key: kong_fields(value) for key, value in shaped.items()}
    if isinstance(fields, dict):
        return {key: kong_fields(value) for key, value in fields.items()}
    if isinstance(fields, list):
        return [kong_fields(item) for item in fields]
    return fields


def json_response(request: IRequest, body: Any, status: int = 200) -> bytes:
    """
    Answer C{request} with C{status} and C{body} as JSON.

    @return: the bytes for the Klein route to return.
    """
    data = encode(body)
    request.setResponseCode(status)
    request.setHeader(b"content-type", JSON_CONTENT_TYPE)
    return data


def no_content(request: IRequest) -> bytes:
    """
    Answer C{request} with 204 and no body.
    """
    request.setResponseCode(204)
    return b""


def error_response(request: IRequest, failure: Failure) -> bytes:
    """
    Turn any failure into the Kong-shaped JSON answer for it.

    L{GatewayError}s answer with their status and body; an unknown path is
    404 and a wrong method 405 (with C{Allow}); anything else is logged
    with its traceback and answered 500 without details.
    """
    error = failure.value
    if isinstance(error, SchemaViolation):
        body = error.body()
        if "fields" in body:
            body["fields"] = kong_fields(body["fields"])
        return json_response(request, body, error.status)
    if isinstance(error, GatewayError):
        return json_response(request, error.body(), error.status)
    if isinstance(error, NoSuchPath):
        return json_response(request, NOT_FOUND, 404)
    if isinstance(error, MethodNotAllowed):
        if error.valid_methods:
            request.setHeader(b"allow", ", ".join(sorted(error.valid_methods)).encode("ascii"))
        return json_response(request, METHOD_NOT_ALLOWED, 405)
    if isinstance(error, HTTPException) and error.code is not None and error.code < 500:
        for name, value in error.get_response().headers.items():
            if name.lower() == "location":
                request.setHeader(b"location", value.encode("utf-8"))
        return json_response(request, {"message": error.name}, error.code)
    _log.failure("Unexpected error answering {method} {uri}", failure,
                 method=request.method, uri=request.uri)
    return json_response(request, UNEXPECTED, 500)
