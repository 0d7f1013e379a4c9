"""
basic-auth: authenticate requests by a username and password
(C{Authorization: Basic ...}, or C{Proxy-Authorization}), as Kong's
basic-auth does.

Passwords are stored as salted scrypt hashes (L{echogate.entities.credentials}),
which take about 35 ms to check: L{PasswordCheck}
(L{echogate.bundled.password_checks}) runs a few at a time in the
reactor's thread pool, served fairly between client addresses, and
remembers recent successes, so a client sending the same credentials
again costs an HMAC rather than an scrypt. An unknown username is checked
against a dummy hash of the same cost, so that it is answered no sooner
than a wrong password.

Every failure answers 401 C{{"message": "Unauthorized"}} with
C{WWW-Authenticate: Basic realm="<realm>"}; a client address with too
many checks waiting gets 429 at once.
"""
from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Callable, Mapping

from twisted.internet.defer import Deferred

from echogate.bundled.consumers import UNAUTHORIZED, Authenticated, AuthPlugin, Refused, refused
from echogate.bundled.password_checks import PasswordCheck, TooManyChecks
from echogate.entities import credentials
from echogate.entities.credentials import dummy_hash
from echogate.interfaces import IPluginNode
from echogate.schema import Boolean, Record, String

__all__ = ["BasicAuth", "PasswordCheck", "parse_basic", "BUSY"]

_BASIC = re.compile(r"\s*[Bb]asic\s*(.+)")
_PARTS = re.compile(r"([^:]+):(.*)")

#: The message of the 429 answered to an address with too many checks waiting.
BUSY = "Too many password checks from this client, try again later"


def parse_basic(header: str) -> tuple[str, str] | None:
    """
    The username and password of a C{Basic} authorization header, or
    C{None} when it has none.
    """
    match = _BASIC.search(header)
    if match is None:
        return None
    try:
        decoded = base64.b64decode(match.group(1).strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    parts = _PARTS.search(decoded)
    if parts is None:
        return None
    return parts.group(1), parts.group(2)


class BasicAuth(AuthPlugin):
    """
    Kong's basic-auth (priority 1100).

    @param check: checks a password against a stored hash, called as
        C{check(stored, password, client_address, credential_id)}: a bool,
        a Deferred of one, or L{TooManyChecks} raised (a L{PasswordCheck}
        by default, running its hashes in the node's thread pool). A
        C{check} with a C{bind(node)} method is given the node by
        L{node_service}.
    """

    name = "basic-auth"
    version = "1.0.0"
    priority = 1100
    #: Its credentials, an entity it owns (stored in a table of their own).
    entities = (credentials.BASICAUTH_ENTITY,)
    config_schema = Record({
        "anonymous": String(description="A consumer (id or username) for requests that fail to authenticate."),
        "hide_credentials": Boolean(required=True, default=False, description=(
            "Remove the Authorization (and Proxy-Authorization) header from the request sent to the service.")),
        "realm": String(required=True, default="service",
                        description="The realm of the WWW-Authenticate challenge."),
    })

    _check: Callable[[str, str, str, str], Any]
    _dummy: str

    def __init__(self, check: Callable[[str, str, str, str], Any] | None = None):
        object.__setattr__(self, "_check", check if check is not None else PasswordCheck())
        object.__setattr__(self, "_dummy", dummy_hash())

    def node_service(self, node: IPluginNode) -> None:
        """
        Give C{node} to the check (its thread pool runs the hashes, its
        reactor ages the remembered successes).
        """
        bind = getattr(self._check, "bind", None)
        if callable(bind):
            bind(node)

    def authenticate_request(self, ctx: Any, config: Mapping[str, Any]) -> Authenticated | Refused | Deferred:
        challenge = f'Basic realm="{config["realm"]}"'
        authorization = ctx.request.get_header("authorization")
        proxy_authorization = ctx.request.get_header("proxy-authorization")
        if authorization is None and proxy_authorization is None:
            return refused(UNAUTHORIZED, challenge)
        given = None
        credential = None
        if config["hide_credentials"]:
            # Both, whichever authenticates: the other may be another consumer's.
            ctx.upstream.remove_header("proxy-authorization")
            ctx.upstream.remove_header("authorization")
        for header in (proxy_authorization, authorization):
            given = parse_basic(header) if header is not None else None
            if given is not None:
                credential = ctx.credentials.find("basic-auth", given[0])
                if credential is not None:
                    break
        consumer = self.owner(ctx, credential) if credential is not None else None
        if credential is None or given is None or consumer is None:
            # An unknown username costs the same hash as a wrong password.
            attempt = _first_given(proxy_authorization, authorization)
            if attempt is None:
                return refused(UNAUTHORIZED, challenge)
            credential = consumer = None
            stored, password, credential_id = self._dummy, attempt[1], ""
        else:
            stored, password, credential_id = credential["password"], given[1], credential["id"]

        def checked(matches: bool) -> Authenticated | Refused:
            if not matches or credential is None or consumer is None:
                return refused(UNAUTHORIZED, challenge)
            return Authenticated(consumer, credential, credential["username"])

        try:
            result = self._check(stored, password, ctx.request.client_ip, credential_id)
        except TooManyChecks:
            return Refused(429, {"message": BUSY}, {"Retry-After": "1"})
        if isinstance(result, Deferred):
            return result.addCallback(checked)
        return checked(result)


def _first_given(*headers: str | None) -> tuple[str, str] | None:
    """
    The first username and password among C{headers}, or C{None}.
    """
    for header in headers:
        given = parse_basic(header) if header is not None else None
        if given is not None:
            return given
    return None
