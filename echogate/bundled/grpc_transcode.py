"""
JSON to protobuf and back for grpc-web's JSON modes (Kong's
C{application/grpc-web+json}, C{application/grpc-web-text+json} and
C{application/json}): the methods a C{.proto} file declares, their
message types, and the conversions.

A C{.proto} file is compiled with C{grpc_tools.protoc} (the
C{grpcio-tools} package, which brings C{protobuf}) into descriptors, once
per file and process, as Kong compiles it once per worker. Without
C{grpcio-tools} installed, L{methods_of} raises L{TranscodingUnavailable}.
"""
from __future__ import annotations

import importlib
import json
import os
import tempfile
from typing import Any, Callable

import attrs


def _module(name: str) -> Any:
    """
    The module C{name} of C{protobuf} or C{grpcio-tools}: imported when
    first needed (they ship no types, and are needed only for JSON).
    """
    return importlib.import_module(name)


class TranscodingUnavailable(Exception):
    """
    JSON transcoding needs C{grpcio-tools} (and C{protobuf}), which are
    not installed.
    """


class ProtoError(Exception):
    """
    A C{.proto} file could not be compiled.
    """


class MessageError(ValueError):
    """
    A message could not be converted (JSON that does not fit the type, or
    bytes that are not one).
    """


@attrs.frozen
class Method:
    """
    One method of a service: how to make its request from JSON and its
    replies into JSON.

    @ivar request_type: the request message's class.
    @ivar reply_type: the reply message's class.
    """

    request_type: Any
    reply_type: Any

    def request_bytes(self, text: bytes) -> bytes:
        """
        The protobuf encoding of the JSON request C{text}.

        @raise MessageError: C{text} is not JSON of the request's type.
        """
        json_format = _module("google.protobuf.json_format")
        try:
            message = json_format.Parse(text, self.request_type())
        except (json_format.ParseError, UnicodeDecodeError) as e:
            raise MessageError(str(e)) from None
        data: bytes = message.SerializeToString()
        return data

    def reply_json(self, data: bytes) -> bytes:
        """
        The JSON of the protobuf-encoded reply C{data} (fields by their
        names in the C{.proto}, defaults left out, as Kong's).

        @raise MessageError: C{data} is not a reply.
        """
        json_format = _module("google.protobuf.json_format")
        try:
            message = self.reply_type.FromString(data)
        except _module("google.protobuf.message").DecodeError as e:
            raise MessageError(str(e)) from None
        value = json_format.MessageToDict(message, preserving_proto_field_name=True)
        return json.dumps(value, separators=(",", ":")).encode("utf-8")


def _compile(path: str) -> Any:
    """
    The C{FileDescriptorSet} of C{path} and every file it imports.
    """
    try:
        descriptor_pb2 = _module("google.protobuf.descriptor_pb2")
        protoc = _module("grpc_tools.protoc")
    except ImportError:
        raise TranscodingUnavailable("JSON transcoding needs the grpcio-tools package") from None
    if not os.path.isfile(path):
        raise ProtoError(f"no .proto file at {path!r}")
    well_known = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    with tempfile.TemporaryDirectory(prefix="echogate-proto-") as where:
        out = os.path.join(where, "set.pb")
        status = protoc.main(["protoc", f"-I{os.path.dirname(os.path.abspath(path))}", f"-I{well_known}",
                              "--include_imports", f"--descriptor_set_out={out}", os.path.abspath(path)])
        if status != 0:
            raise ProtoError(f"protoc could not compile {path!r} (status {status})")
        with open(out, "rb") as f:
            return descriptor_pb2.FileDescriptorSet.FromString(f.read())


def methods_of(path: str) -> dict[str, Method]:
    """
    The methods the C{.proto} file at C{path} (and the files it imports)
    declares, by the path gRPC calls them at: C{/package.Service/Method}.

    @raise TranscodingUnavailable: C{grpcio-tools} is not installed.
    @raise ProtoError: the file is missing or does not compile.
    """
    descriptors = _compile(path)
    message_factory = _module("google.protobuf.message_factory")
    pool = _module("google.protobuf.descriptor_pool").DescriptorPool()
    for file in descriptors.file:
        pool.Add(file)

    def message_class(name: str) -> Any:
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(name.lstrip(".")))

    methods = {}
    for file in descriptors.file:
        prefix = f"{file.package}." if file.package else ""
        for service in file.service:
            for method in service.method:
                methods[f"/{prefix}{service.name}/{method.name}"] = Method(
                    message_class(method.input_type), message_class(method.output_type))
    return methods


@attrs.frozen
class ProtoFiles:
    """
    The methods of each C{.proto} file used, compiled on first use and
    kept for the process's life (a changed file is read again after a
    restart, as in Kong).
    """

    _compile: Callable[[str], dict[str, Method]] = methods_of
    _known: dict[str, dict[str, Method]] = attrs.field(factory=dict)

    def methods(self, path: str) -> dict[str, Method]:
        """
        The methods of C{path} (see L{methods_of}, whose errors it raises;
        a failure is not kept, so a fixed file works on the next call).
        """
        known = self._known.get(path)
        if known is None:
            known = self._known[path] = self._compile(path)
        return known


def unframe(data: bytes) -> tuple[bytes | None, bytes]:
    """
    The first whole gRPC message of C{data} and what follows it, or
    C{(None, data)} while it is not all there.

    @raise MessageError: the message is compressed (its flag's low bit),
        which JSON transcoding cannot read.
    """
    if len(data) < 5:
        return None, data
    length = int.from_bytes(data[1:5], "big")
    if len(data) < 5 + length:
        return None, data
    if data[0] & 1:
        raise MessageError("a compressed message cannot be transcoded")
    return data[5:5 + length], data[5 + length:]


def frame(message: bytes) -> bytes:
    """
    C{message} as an uncompressed gRPC message frame.
    """
    return b"\x00" + len(message).to_bytes(4, "big") + message
