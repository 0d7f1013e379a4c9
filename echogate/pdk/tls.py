"""
What plugins see of a request's TLS connection (C{ctx.request.tls}).
"""
from __future__ import annotations

from typing import Any

from OpenSSL import crypto


class TLSInfo:
    """
    The TLS facts of a client connection, read from its OpenSSL
    connection when first asked for.

    @ivar sni: the server name the client sent (lower case), or C{None}.
    @ivar version: the protocol version (C{"TLSv1.3"}), or C{None}.
    @ivar cipher: the cipher's OpenSSL name, or C{None}.
    """

    __slots__ = ("_connection", "sni", "version", "cipher", "_certificate")

    def __init__(self, connection: Any):
        self._connection = connection
        name = connection.get_servername()
        self.sni: str | None = name.decode("ascii", "replace").lower() if name else None
        self.version: str | None = connection.get_protocol_version_name()
        self.cipher: str | None = connection.get_cipher_name()
        self._certificate: str | None | bool = False

    @property
    def client_certificate(self) -> str | None:
        """
        The certificate the client presented (PEM), or C{None}.
        """
        if self._certificate is False:
            peer = self._connection.get_peer_certificate()
            self._certificate = (crypto.dump_certificate(crypto.FILETYPE_PEM, peer).decode("ascii")
                                 if peer is not None else None)
        return self._certificate if isinstance(self._certificate, str) else None


def tls_of(request: Any) -> TLSInfo | None:
    """
    The TLS facts of C{request}'s connection, or C{None} for plain HTTP
    (or a transport without an OpenSSL connection).
    """
    if not request.isSecure():
        return None
    transport = getattr(getattr(request, "channel", None), "transport", None)
    get_handle = getattr(transport, "getHandle", None)
    if get_handle is None:
        return None
    connection = get_handle()
    if not hasattr(connection, "get_servername"):
        return None
    return TLSInfo(connection)
