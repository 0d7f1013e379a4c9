"""
gRPC answers: when a request is a gRPC call, and how an answer the gateway
or a plugin makes (an error, C{ctx.exit}) is told to a gRPC client, after
Kong 3's C{kong.response} (C{kong/pdk/response.lua}).

A request is a gRPC call when its first C{Content-Type} starts with the
bytes C{application/grpc} (case-sensitive, so C{application/grpc+proto}
and even C{application/grpcfoo} are, C{Application/GRPC} is not) and it
came over HTTP/2 (L{is_grpc_request}). To such a request an answer keeps
its HTTP status and says the rest in headers, a "trailers-only" response
with no body: C{grpc-status} (mapped from the HTTP status by
L{grpc_status}) and C{grpc-message}. A plugin's exit that names a
C{Content-Type} itself is a gRPC answer exactly when that type starts
with C{application/grpc}, whatever the request.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

__all__ = [
    "GRPC_CONTENT_TYPE",
    "GRPC_NAMES",
    "HTTP_TO_GRPC",
    "encode_grpc_answer",
    "grpc_message",
    "grpc_status",
    "is_grpc_content_type",
    "is_grpc_request",
]

#: What a gRPC request's (or answer's) C{Content-Type} starts with.
GRPC_CONTENT_TYPE = "application/grpc"
_GRPC_PREFIX = GRPC_CONTENT_TYPE.encode("ascii")

#: Kong's table: the gRPC status code of an HTTP status; and 502 (a
#: service that cannot be reached, or answered badly) is UNAVAILABLE, as
#: gRPC's own mapping of HTTP statuses has it (Kong's table lacks 502,
#: which it answers INTERNAL: a client would not retry).
HTTP_TO_GRPC: Mapping[int, int] = MappingProxyType({
    200: 0,    # OK
    400: 3,    # INVALID_ARGUMENT
    401: 16,   # UNAUTHENTICATED
    403: 7,    # PERMISSION_DENIED
    404: 5,    # NOT_FOUND
    409: 6,    # ALREADY_EXISTS
    429: 8,    # RESOURCE_EXHAUSTED
    499: 1,    # CANCELLED
    500: 13,   # INTERNAL
    501: 12,   # UNIMPLEMENTED
    502: 14,   # UNAVAILABLE
    503: 14,   # UNAVAILABLE
    504: 4,    # DEADLINE_EXCEEDED
})

#: The names Kong gives the gRPC status codes (its C{grpc-message} when an
#: answer has no message of its own).
GRPC_NAMES: Mapping[int, str] = MappingProxyType({
    0: "OK", 1: "Canceled", 2: "Unknown", 3: "InvalidArgument", 4: "DeadlineExceeded",
    5: "NotFound", 6: "AlreadyExists", 7: "PermissionDenied", 8: "ResourceExhausted",
    9: "FailedPrecondition", 10: "Aborted", 11: "OutOfRange", 12: "Unimplemented",
    13: "Internal", 14: "Unavailable", 15: "DataLoss", 16: "Unauthenticated",
})

_UNKNOWN = 2


def grpc_status(status: int) -> int:
    """
    The gRPC status code Kong answers for HTTP C{status}: from
    L{HTTP_TO_GRPC}, else 13 (INTERNAL) for any other 5xx, 3
    (INVALID_ARGUMENT) for any other 4xx, 0 (OK) for any other 2xx, and 2
    (UNKNOWN) for the rest.
    """
    code = HTTP_TO_GRPC.get(status)
    if code is not None:
        return code
    if 500 <= status <= 599:
        return HTTP_TO_GRPC[500]
    if 400 <= status <= 499:
        return HTTP_TO_GRPC[400]
    if 200 <= status <= 299:
        return HTTP_TO_GRPC[200]
    return _UNKNOWN


def is_grpc_content_type(value: bytes | str | None) -> bool:
    """
    Whether a C{Content-Type} value is gRPC's: it starts with the bytes
    C{application/grpc}, case and all (Kong's plain prefix test).
    """
    if value is None:
        return False
    if isinstance(value, str):
        return value.startswith(GRPC_CONTENT_TYPE)
    return value.startswith(_GRPC_PREFIX)


def is_grpc_request(request: Any) -> bool:
    """
    Whether C{request} (a C{twisted.web} request) is a gRPC call, as Kong
    decides it: its first C{Content-Type} is gRPC's
    (L{is_grpc_content_type}) and it came over HTTP/2 (its C{clientproto}
    is C{b"HTTP/2"}).
    """
    if getattr(request, "clientproto", None) != b"HTTP/2":
        return False
    headers = getattr(request, "requestHeaders", None)
    if headers is None:
        return False
    values = headers.getRawHeaders(b"content-type")
    return bool(values) and is_grpc_content_type(values[0])


def grpc_message(text: str) -> str:
    """
    C{text} as a C{grpc-message} value: percent-encoded as the gRPC
    protocol asks (every byte of its UTF-8 outside printable ASCII, and
    C{%}); printable ASCII, spaces included, as it is.
    """
    if text.isascii() and text.isprintable() and "%" not in text:
        return text
    return "".join(chr(b) if 0x20 <= b <= 0x7E and b != 0x25 else "%%%02X" % b
                   for b in text.encode("utf-8"))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return str(value)
    return None


def encode_grpc_answer(status: int, body: Any, headers: dict[str, str], grpc_request: bool) -> bytes | None:
    """
    The body of an answer (C{status}, C{body} and C{headers}, as
    C{ctx.exit} takes them) when it is a gRPC answer, completing
    C{headers}; C{None} when it is not (then the answer is encoded as any
    other, see L{echogate.pdk.messages.encode_exit_body}). Kong's rules:

      - it is a gRPC answer when C{headers} name a C{Content-Type} that
        starts with C{application/grpc} (a gRPC "output": its body is
        sent), or name none and C{grpc_request} is true; then
        C{Content-Type: application/grpc} is added when none is named.
      - C{grpc-status} is added from C{status} (L{grpc_status}) unless
        C{headers} have one.
      - on a gRPC request, a message is not a body: a C{str} or C{bytes}
        body, or the C{"message"} of a mapping body, is sent as
        C{grpc-message} and the body is empty; a mapping without a string
        C{"message"} is dropped.
      - otherwise, when C{grpc-status} was added and no C{grpc-message}
        is named, the code's name (L{GRPC_NAMES}) is.

    @raise ValueError: for a mapping (or list) body on a gRPC output,
        which Kong refuses too ("table body encoding with gRPC is not
        supported").
    """
    content_type = _header(headers, "content-type")
    if content_type is None:
        if not grpc_request:
            return None
        output = False
        headers["Content-Type"] = GRPC_CONTENT_TYPE
    elif is_grpc_content_type(content_type):
        output = True
    else:
        return None
    code = None
    if _header(headers, "grpc-status") is None:
        code = grpc_status(status)
        headers["grpc-status"] = str(code)
    if body is not None and not isinstance(body, (str, bytes)):
        if output:
            raise ValueError("table body encoding with gRPC is not supported")
        message = body.get("message") if isinstance(body, Mapping) else None
        body = message if isinstance(message, str) else None
    if body is not None and not output:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        headers["grpc-message"] = grpc_message(text)
        return b""
    if code is not None and _header(headers, "grpc-message") is None:
        headers["grpc-message"] = GRPC_NAMES[code]
    if body is None:
        return b""
    return body.encode("utf-8") if isinstance(body, str) else body
