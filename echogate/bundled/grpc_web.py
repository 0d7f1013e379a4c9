"""
grpc-web: let browsers call gRPC services. The client speaks gRPC-Web
over HTTP/1.1 (or HTTP/2); the service gets real gRPC and its answer goes
back as gRPC-Web.

Requests (C{access}): C{application/grpc-web} and
C{application/grpc-web+proto} bodies pass unchanged (the frames are
gRPC's); C{application/grpc-web-text} and C{application/grpc-web-text+proto}
bodies are base64, decoded here (a body that is not base64 is answered
400). The service is called with C{POST}, C{Content-Type:
application/grpc} and C{TE: trailers}, on the client's path (or the
route-stripped one with C{pass_stripped_path}). Every C{OPTIONS} request
is answered 200 with CORS headers, as Kong does.

Responses from the service (C{header_filter}, C{body_filter}): the
Content-Type becomes the client's gRPC-Web type, the body is base64
encoded in text mode, and the service's trailers (C{grpc-status},
C{grpc-message}, metadata: C{ctx.response.trailers}) end the body as a
gRPC-Web trailer frame, after which C{ctx.response.trailers} is emptied.

With a C{.proto} file (C{proto}), the JSON types are transcoded as in
Kong: C{application/grpc-web+json} and C{application/grpc-web-text+json}
carry gRPC-Web frames of JSON messages, C{application/json} one bare JSON
message (and its answer has neither frames nor a trailer frame); the
service gets and sends protobuf (L{echogate.bundled.grpc_transcode}).
"""
from __future__ import annotations

import binascii
import re
from typing import Any, Mapping

import attrs

from echogate._version import __version__
from echogate.bundled.grpc_transcode import (
    MessageError,
    Method,
    ProtoError,
    ProtoFiles,
    TranscodingUnavailable,
    frame,
    unframe,
)
from echogate.pdk.grpc import GRPC_NAMES, grpc_status
from echogate.plugin import GatewayPlugin
from echogate.schema import Boolean, Record, String

#: The answer to every C{OPTIONS} request (Kong's headers).
PREFLIGHT_HEADERS = {
    "Content-Type": "application/grpc-web-text+proto",
    "Access-Control-Allow-Methods": "POST",
    "Access-Control-Allow-Headers": "content-type,x-grpc-web,x-user-agent",
}



@attrs.frozen
class Kind:
    """
    What a gRPC-Web content type says of the body.

    @ivar text: base64 text.
    @ivar framed: gRPC frames (else one bare message).
    @ivar json: JSON messages, transcoded with a C{.proto} file (else
        protobuf, passed as it is).
    """

    text: bool
    framed: bool
    json: bool


#: Kong's gRPC-Web types.
KINDS = {
    "application/grpc-web": Kind(text=False, framed=True, json=False),
    "application/grpc-web+proto": Kind(text=False, framed=True, json=False),
    "application/grpc-web-text": Kind(text=True, framed=True, json=False),
    "application/grpc-web-text+proto": Kind(text=True, framed=True, json=False),
    "application/grpc-web+json": Kind(text=False, framed=True, json=True),
    "application/grpc-web-text+json": Kind(text=True, framed=True, json=True),
    "application/json": Kind(text=False, framed=False, json=True),
}

NEEDS_PROTO = "transcoding requests require a .proto file defining the service"
NOT_BASE64 = "the request body is not valid base64"
NO_MESSAGE = "the request body is not a whole gRPC message"
UNEXPECTED = {"message": "An unexpected error occurred"}

#: gRPC-Web's flag byte of a trailer frame.
TRAILER_FLAG = 0x80

_SEGMENT = re.compile(rb"[A-Za-z0-9+/]*={0,2}")
_LINE_BREAK = re.compile(rb"[\r\n]")


def media_type(content_type: str | None) -> str | None:
    """
    The media type of a C{Content-Type} value, lower case, without its
    parameters; C{None} without one.
    """
    if content_type is None:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


def decode_text(body: bytes) -> bytes:
    """
    Decode a gRPC-Web text body: standard base64, possibly several padded
    pieces one after the other (a client may flush its buffer mid-stream);
    the last piece may lack its padding.

    @raise ValueError: anything else (other characters, whitespace,
        misplaced padding, a length no base64 has).
    """
    out = []
    position, end = 0, len(body)
    while position < end:
        segment = _SEGMENT.match(body, position)
        piece = segment.group() if segment is not None else b""
        if not piece:
            raise ValueError(f"not base64 at byte {position}")
        data = piece.rstrip(b"=")
        if len(piece) != len(data):
            if len(piece) % 4:
                raise ValueError(f"misplaced padding before byte {position + len(piece)}")
        elif len(data) % 4 == 1:
            raise ValueError("truncated base64")
        out.append(binascii.a2b_base64(data + b"=" * (-len(data) % 4)))
        position += len(piece)
    return b"".join(out)


def trailer_frame(trailers: list[tuple[bytes, bytes]]) -> bytes:
    """
    The gRPC-Web frame carrying C{trailers}: the flag byte C{0x80}, the
    length (4 bytes, big-endian), then one C{name:value\\r\\n} line each,
    names in lower case (line breaks in a value become spaces).
    """
    block = b"".join(name.lower() + b":" + _LINE_BREAK.sub(b" ", value) + b"\r\n" for name, value in trailers)
    return bytes([TRAILER_FLAG]) + len(block).to_bytes(4, "big") + block


class FrameBoundaries:
    """
    Follows the gRPC frames of a body given in pieces (a 5-byte head:
    flag and big-endian length, then the message), to tell whether a
    piece ends where a frame does.
    """

    def __init__(self) -> None:
        self._head = b""
        self._left = 0

    def advance(self, data: bytes) -> bool:
        """
        Take the next piece of the body; whether it ends on a frame's end.
        """
        position, end = 0, len(data)
        while position < end:
            if self._left:
                step = min(self._left, end - position)
                self._left -= step
                position += step
                continue
            take = min(5 - len(self._head), end - position)
            self._head += data[position:position + take]
            position += take
            if len(self._head) == 5:
                self._left = int.from_bytes(self._head[1:], "big")
                self._head = b""
        return not (self._left or self._head)


class TextEncoder:
    """
    Base64 for a body given in pieces, so that the pieces sent decode:
    up to 2 bytes are held back to the next piece (base64 encodes 3 at a
    time), except where a piece ends on a gRPC frame's end, which is sent
    whole (padded), so that a streamed message never waits for the next
    one. The output is a run of padded base64 pieces, as gRPC-Web allows.
    """

    def __init__(self) -> None:
        self._held = b""
        self._frames = FrameBoundaries()

    def encode(self, data: bytes) -> bytes:
        """
        The base64 of what can be sent of C{data} now.
        """
        boundary = self._frames.advance(data)
        data = self._held + data
        keep = 0 if boundary else len(data) % 3
        self._held = data[len(data) - keep:] if keep else b""
        return binascii.b2a_base64(data[:len(data) - keep], newline=False) if len(data) > keep else b""

    def finish(self, tail: bytes) -> bytes:
        """
        The base64 of what was held back, followed by C{tail}.
        """
        data, self._held = self._held + tail, b""
        return binascii.b2a_base64(data, newline=False)


def _status_trailers(ctx: Any) -> list[tuple[bytes, bytes]]:
    """
    The status of a response whose service sent no trailers: C{grpc-status}
    and C{grpc-message} from its headers (a trailers-only answer), else the
    status Kong gives the HTTP status (L{grpc_status}: 200 is 0, OK, with
    an empty message, as Kong's grpc-web says; another is named).
    """
    response = ctx.response
    status = response.get_upstream_header("grpc-status")
    if status is not None:
        pairs = [(b"grpc-status", status.encode("latin-1"))]
        for name in ("grpc-message", "grpc-status-details-bin"):
            value = response.get_upstream_header(name)
            if value is not None:
                pairs.append((name.encode("ascii"), value.encode("latin-1")))
        return pairs
    code = grpc_status(response.upstream_status)
    message = GRPC_NAMES.get(code, "").encode("ascii") if code else b""
    return [(b"grpc-status", b"%d" % code), (b"grpc-message", message)]


class JsonReplies:
    """
    The replies of a transcoded call, as they stream: protobuf frames in,
    JSON out (framed, unless the client sent bare JSON).
    """

    def __init__(self, method: Method, framed: bool):
        self._method = method
        self._framed = framed
        self._held = b""

    def convert(self, data: bytes) -> bytes:
        """
        The JSON of the replies that C{data} completes.

        @raise MessageError: a reply that is not of the method's type.
        """
        rest = self._held + data
        out = []
        message, rest = unframe(rest)
        while message is not None:
            reply = self._method.reply_json(message)
            out.append(frame(reply) if self._framed else reply)
            message, rest = unframe(rest)
        self._held = rest
        return b"".join(out)


@attrs.frozen
class _Translation:
    """
    How one request's response goes back: its gRPC-Web type, its kind,
    and for a transcoded call, its method.
    """

    mimetype: str
    kind: Kind
    method: Method | None = None


@attrs.frozen
class GrpcWeb(GatewayPlugin):
    """
    Kong's grpc-web.

    @ivar protos: the methods of the C{.proto} files configs name.
    """

    protos: ProtoFiles = attrs.field(factory=ProtoFiles, repr=False)

    name = "grpc-web"
    version = __version__
    priority = 3
    config_schema = Record({
        "proto": String(description="The path of a .proto file describing the service's methods, to"
                                    " transcode JSON requests (needs the grpcio-tools package)."),
        "pass_stripped_path": Boolean(description="Call the service with the path after the route's"
                                                  " strip_path instead of the client's."),
        "allow_origin_header": String(default="*", description="Access-Control-Allow-Origin in the"
                                                               " responses to the gRPC-Web client."),
    })

    def reads_body(self, config: Mapping[str, Any], request: Any) -> bool:
        """
        Text and JSON bodies are read, to decode them; binary ones stream
        unchanged.
        """
        kind = KINDS.get(media_type(request.get_header("content-type")) or "")
        return request.method != "OPTIONS" and kind is not None and (kind.text or kind.json)

    def access(self, ctx: Any, config: Mapping[str, Any]) -> None:
        origin = config["allow_origin_header"]
        if origin is not None:
            ctx.response.set_header("Access-Control-Allow-Origin", origin)
        request = ctx.request
        if request.method == "OPTIONS":
            headers = dict(PREFLIGHT_HEADERS)
            if origin is not None:
                headers["Access-Control-Allow-Origin"] = origin
            ctx.exit(200, b"OK", headers)
            return
        mimetype = media_type(request.get_header("content-type")) or ""
        kind = KINDS.get(mimetype)
        upstream = ctx.upstream
        if kind is None or (kind.json and config["proto"] is None):
            ctx.log.info("{content_type!r} refused: {message}", content_type=request.get_header("content-type"),
                         message=NEEDS_PROTO)
            ctx.exit(400, NEEDS_PROTO)
            return
        method = None
        if kind.json:
            method = self._method(ctx, config)
            if method is None:
                return
        if kind.text or kind.json:
            body = request.body()
            if kind.text:
                try:
                    body = decode_text(body)
                except ValueError as e:
                    ctx.log.info("grpc-web-text body refused: {why}", why=str(e))
                    ctx.exit(400, NOT_BASE64)
                    return
            if method is not None:
                body = self._transcode(ctx, method, kind, body)
                if body is None:
                    return
            upstream.set_body(body)
        service = ctx.service or {}
        if service.get("protocol") in ("grpc", "grpcs") and not config["pass_stripped_path"]:
            upstream.set_path(request.path)
        upstream.set_method("POST")
        upstream.set_header("Content-Type", "application/grpc")
        upstream.set_header("TE", "trailers")
        ctx.plugin["translation"] = _Translation(mimetype, kind, method)

    def _method(self, ctx: Any, config: Mapping[str, Any]) -> Method | None:
        """
        The method a JSON call names, from the C{.proto} file; C{None}
        once the request was answered (400 for a path the file does not
        declare, 500 for a file that cannot be read).
        """
        path = ctx.upstream.path if config["pass_stripped_path"] else ctx.request.path
        try:
            methods = self.protos.methods(config["proto"])
        except (TranscodingUnavailable, ProtoError) as e:
            ctx.log.error("cannot transcode with {proto!r}: {why}", proto=config["proto"], why=str(e))
            ctx.exit(500, UNEXPECTED)
            return None
        method = methods.get(path)
        if method is None:
            ctx.exit(400, f'Unknown path "{path}"')
        return method

    def _transcode(self, ctx: Any, method: Method, kind: Kind, body: bytes) -> bytes | None:
        """
        The protobuf frame of a JSON request body; C{None} once the
        request was answered 400 (not one whole message, or JSON that
        does not fit the method's request type).
        """
        if kind.framed:
            try:
                message, _ = unframe(body)
            except MessageError:
                message = None
            if message is None:
                ctx.exit(400, NO_MESSAGE)
                return None
            body = message
        try:
            return frame(method.request_bytes(body))
        except MessageError as e:
            ctx.exit(400, f"the request body is not a valid {method.request_type.DESCRIPTOR.full_name}: {e}")
            return None

    def header_filter(self, ctx: Any, config: Mapping[str, Any]) -> None:
        translation = ctx.plugin.get("translation")
        response = ctx.response
        if translation is None or response.source != "service":
            return
        response.set_header("Content-Type", translation.mimetype)
        response.remove_header("Content-Length")
        kind = translation.kind
        ctx.plugin["encoder"] = TextEncoder() if kind.text else None
        if translation.method is not None:
            ctx.plugin["replies"] = JsonReplies(translation.method, kind.framed)
        ctx.plugin["translating"] = True

    def body_filter(self, ctx: Any, config: Mapping[str, Any], chunk: bytes) -> bytes | None:
        if not ctx.plugin.get("translating"):
            return None
        replies: JsonReplies | None = ctx.plugin.get("replies")
        if replies is not None:
            chunk = replies.convert(chunk)
        encoder: TextEncoder | None = ctx.plugin["encoder"]
        out = chunk if encoder is None else encoder.encode(chunk)
        response = ctx.response
        if response.eof and ctx.plugin["translation"].kind.framed:
            end = trailer_frame(response.trailers or _status_trailers(ctx))
            out += end if encoder is None else encoder.finish(end)
            response.trailers = []
        return out
