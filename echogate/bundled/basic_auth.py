"""
basic-auth: authenticate requests by a username and password
(C{Authorization: Basic ...}, or C{Proxy-Authorization}), as Kong's
basic-auth does.

Passwords are stored as salted scrypt hashes (L{echogate.entities.credentials}),
which take about 40 ms to check: L{PasswordCheck} checks them in the
reactor's thread pool, so the gateway keeps serving meanwhile, and
remembers recent successes, so a client sending the same credentials
again costs an HMAC rather than an scrypt.

Every failure answers 401 C{{"message": "Unauthorized"}} with
C{WWW-Authenticate: Basic realm="<realm>"}.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections import OrderedDict
from typing import Any, Callable, Mapping

from twisted.internet.defer import Deferred, maybeDeferred

from echogate.bundled.consumers import UNAUTHORIZED, Authenticated, AuthPlugin, Refused, refused
from echogate.entities.credentials import verify_password
from echogate.schema import Boolean, Record, String

_BASIC = re.compile(r"\s*[Bb]asic\s*(.+)")
_PARTS = re.compile(r"([^:]+):(.*)")


def in_thread_pool(function: Callable[..., Any], *args: Any) -> Deferred:
    """
    Run C{function(*args)} in the global reactor's thread pool (the
    default for the running gateway; tests pass a runner of their own).
    """
    from twisted.internet import reactor
    from twisted.internet.threads import deferToThreadPool

    return deferToThreadPool(reactor, reactor.getThreadPool(), function, *args)


class PasswordCheck:
    """
    Checks passwords against stored hashes with
    L{echogate.entities.credentials.verify_password}, run by C{run} (in the thread
    pool by default), and remembers the last C{size} successes as an HMAC
    (under a key made at start-up) of the password, by stored hash: a
    changed password has a new hash, so nothing stale is believed.

    @param run: calls C{function(*args)} and returns its result or a
        Deferred of it.
    """

    def __init__(self, run: Callable[..., Any] = in_thread_pool, size: int = 4096):
        self._run = run
        self._size = size
        self._key = os.urandom(32)
        self._known: OrderedDict[str, bytes] = OrderedDict()

    def _mac(self, stored: str, password: str) -> bytes:
        return hmac.new(self._key, stored.encode("utf-8") + b"\0" + password.encode("utf-8"),
                        hashlib.sha256).digest()

    def __call__(self, stored: str, password: str) -> bool | Deferred:
        """
        Whether C{password} matches C{stored}: a bool when known already,
        otherwise a Deferred firing with it.
        """
        mac = self._mac(stored, password)
        known = self._known.get(stored)
        if known is not None and hmac.compare_digest(known, mac):
            self._known.move_to_end(stored)
            return True

        def remember(matches: bool) -> bool:
            if matches:
                self._known[stored] = mac
                self._known.move_to_end(stored)
                while len(self._known) > self._size:
                    self._known.popitem(last=False)
            return matches

        return maybeDeferred(self._run, verify_password, stored, password).addCallback(remember)


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

    @param check: checks a password against a stored hash (a
        L{PasswordCheck} by default).
    """

    name = "basic-auth"
    version = "1.0.0"
    priority = 1100
    config_schema = Record({
        "anonymous": String(description="A consumer (id or username) for requests that fail to authenticate."),
        "hide_credentials": Boolean(required=True, default=False, description=(
            "Remove the Authorization (and Proxy-Authorization) header from the request sent to the service.")),
        "realm": String(required=True, default="service",
                        description="The realm of the WWW-Authenticate challenge."),
    })

    def __init__(self, check: Callable[[str, str], Any] | None = None):
        object.__setattr__(self, "_check", check if check is not None else PasswordCheck())

    def authenticate_request(self, ctx: Any, config: Mapping[str, Any]) -> Authenticated | Refused | Deferred:
        challenge = f'Basic realm="{config["realm"]}"'
        authorization = ctx.request.get_header("authorization")
        proxy_authorization = ctx.request.get_header("proxy-authorization")
        if authorization is None and proxy_authorization is None:
            return refused(UNAUTHORIZED, challenge)
        given = None
        credential = None
        for name, header in (("proxy-authorization", proxy_authorization), ("authorization", authorization)):
            if config["hide_credentials"]:
                ctx.upstream.remove_header(name)
            given = parse_basic(header) if header is not None else None
            if given is not None:
                credential = ctx.credentials.find("basic-auth", given[0])
                if credential is not None:
                    break
        if credential is None or given is None:
            return refused(UNAUTHORIZED, challenge)
        consumer = self.owner(ctx, credential)
        if consumer is None:
            return refused(UNAUTHORIZED, challenge)

        def checked(matches: bool) -> Authenticated | Refused:
            if not matches:
                return refused(UNAUTHORIZED, challenge)
            return Authenticated(consumer, credential, credential["username"])

        result = self._check(credential["password"], given[1])
        if isinstance(result, Deferred):
            return result.addCallback(checked)
        return checked(result)
