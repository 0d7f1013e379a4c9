"""
What the authentication plugins share: telling the upstream who the
consumer is, the anonymous consumer, and Kong's flow of an auth plugin's
C{access} phase (L{AuthPlugin}).

After a plugin authenticates a request, the consumer is on the request
context (C{ctx.consumer}, C{ctx.credential}), so consumer-scoped plugin
configs apply to the plugins after it, and the upstream receives
X-Consumer-ID, X-Consumer-Username, X-Consumer-Custom-ID and
X-Credential-Identifier (or X-Anonymous-Consumer: true), each set only
from the consumer: copies the client sent are removed first.
"""
from __future__ import annotations

from typing import Any, Mapping
from urllib.parse import unquote_plus

import attrs
from twisted.internet.defer import Deferred

from echogate.pdk.headers import HeaderLines, HeaderNames
from echogate.plugin import GatewayPlugin

CONSUMER_ID = "X-Consumer-ID"
CONSUMER_CUSTOM_ID = "X-Consumer-Custom-ID"
CONSUMER_USERNAME = "X-Consumer-Username"
CREDENTIAL_IDENTIFIER = "X-Credential-Identifier"
ANONYMOUS = "X-Anonymous-Consumer"
CONSUMER_GROUPS = "X-Consumer-Groups"
AUTHENTICATED_GROUPS = "X-Authenticated-Groups"

#: The headers that say who the consumer is; never taken from the client.
IDENTITY_HEADERS = (CONSUMER_ID, CONSUMER_CUSTOM_ID, CONSUMER_USERNAME, CREDENTIAL_IDENTIFIER, ANONYMOUS)
#: L{IDENTITY_HEADERS}, checked once for C{set_named}.
IDENTITY_NAMES = HeaderNames(IDENTITY_HEADERS)

UNAUTHORIZED = "Unauthorized"

_CONSUMER_FIELDS = ((CONSUMER_ID, "id"), (CONSUMER_CUSTOM_ID, "custom_id"), (CONSUMER_USERNAME, "username"))


def identity_headers(consumer: Mapping[str, Any] | None, credential: Mapping[str, Any] | None = None,
                     identifier: str | None = None) -> tuple[tuple[str, str], ...]:
    """
    The identity headers the upstream gets for C{consumer} (see
    L{set_consumer}): C{(name, value)} pairs, in the order they are sent.
    """
    headers = []
    if consumer is not None:
        for name, field in _CONSUMER_FIELDS:
            value = consumer.get(field)
            if value is not None:
                headers.append((name, value))
    if credential is None:
        headers.append((ANONYMOUS, "true"))
    elif identifier is not None:
        headers.append((CREDENTIAL_IDENTIFIER, identifier))
    return tuple(headers)


def identity_values(consumer: Mapping[str, Any] | None, credential: Mapping[str, Any] | None = None,
                    identifier: str | None = None) -> tuple[str | None, ...]:
    """
    The values of L{identity_headers}, one for each of L{IDENTITY_HEADERS}
    in its order (C{None}: that header is not sent), for C{set_named}
    with L{IDENTITY_NAMES}.
    """
    sent = dict(identity_headers(consumer, credential, identifier))
    return tuple(sent.get(name) for name in IDENTITY_HEADERS)


def identity_lines(consumer: Mapping[str, Any] | None, credential: Mapping[str, Any] | None = None,
                   identifier: str | None = None) -> HeaderLines:
    """
    L{identity_values} as header lines (C{IDENTITY_NAMES.lines}), for an
    outcome worked out once and told on many requests.
    """
    return IDENTITY_NAMES.lines(identity_values(consumer, credential, identifier))


def set_consumer(ctx: Any, consumer: Mapping[str, Any] | None, credential: Mapping[str, Any] | None = None,
                 identifier: str | None = None, values: tuple[str | None, ...] | HeaderLines | None = None) -> None:
    """
    Record that the request is C{consumer}'s (authenticated by
    C{credential}, or anonymous when C{credential} is C{None}) and tell the
    upstream, replacing whatever identity headers the client sent.

    @param identifier: what X-Credential-Identifier says (the key-auth
        credential's id, the basic-auth username, the jwt key).
    @param values: L{identity_values} (or L{identity_lines}) of the
        others, when already known.
    """
    ctx.authenticate(consumer, credential)
    # (Every identity header goes, then those of this consumer are added,
    # in the order of identity_headers: one pass over the header lines.)
    ctx.upstream.set_named(IDENTITY_NAMES, identity_values(consumer, credential, identifier)
                           if values is None else values)


def remove_query_arg(query: str, name: str) -> str:
    """
    C{query} without the arguments called C{name} (compared decoded), the
    others kept byte for byte.
    """
    kept = [part for part in query.split("&")
            if part and unquote_plus(part.split("=", 1)[0]) != name]
    return "&".join(kept)


@attrs.frozen
class Authenticated:
    """
    A successful authentication.

    @ivar consumer: the consumer record.
    @ivar credential: the credential record.
    @ivar identifier: the X-Credential-Identifier value.
    @ivar values: the upstream's identity headers (L{identity_values},
        or L{identity_lines}), when worked out in advance (an outcome kept
        for many requests); C{None}: worked out from the others.
    """

    consumer: Mapping[str, Any]
    credential: Mapping[str, Any]
    identifier: str | None
    values: tuple[str | None, ...] | HeaderLines | None = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen
class Refused:
    """
    A failed authentication: the answer to give unless an anonymous
    consumer is configured.

    @ivar body: a JSON-ready body (usually C{{"message": ...}}).
    """

    status: int
    body: Any
    headers: Mapping[str, str] = attrs.field(factory=dict)


def refused(message: str, www_authenticate: str | None = None, status: int = 401) -> Refused:
    """
    A L{Refused} with Kong's C{{"message": ...}} body and, when given, a
    C{WWW-Authenticate} challenge.
    """
    headers = {"WWW-Authenticate": www_authenticate} if www_authenticate is not None else {}
    return Refused(status, {"message": message}, headers)


class AuthPlugin(GatewayPlugin):
    """
    Kong's flow for an authentication plugin's C{access} phase, around
    L{authenticate_request}:

      - with C{run_on_preflight} false, C{OPTIONS} requests pass untouched;
      - without C{anonymous}, a failure answers the request (logical AND
        between auth plugins);
      - with C{anonymous} (a consumer's id or username), a request already
        authenticated by an earlier plugin passes, and a failure makes the
        request that consumer's, with X-Anonymous-Consumer (logical OR);
        if that consumer does not exist, 500.

    Auth plugins cannot be scoped to a consumer (C{no_consumer}).
    """

    no_consumer = True

    def authenticate_request(self, ctx: Any, config: Mapping[str, Any]) -> Any:
        """
        Authenticate the request: return (or fire a Deferred with) an
        L{Authenticated} or a L{Refused}.
        """
        raise NotImplementedError

    def access(self, ctx: Any, config: Mapping[str, Any]) -> Deferred | None:
        if not config.get("run_on_preflight", True) and ctx.request.method == "OPTIONS":
            return None
        if config.get("anonymous") and ctx.credential is not None:
            return None
        outcome = self.authenticate_request(ctx, config)
        # (Deferred is generic: isinstance goes through ABCMeta's
        # Python-level check, so the usual outcomes are ruled out first.)
        if type(outcome) is not Authenticated and type(outcome) is not Refused and isinstance(outcome, Deferred):
            return outcome.addCallback(self._conclude, ctx, config)
        self._conclude(outcome, ctx, config)
        return None

    def _conclude(self, outcome: Authenticated | Refused, ctx: Any, config: Mapping[str, Any]) -> None:
        if isinstance(outcome, Authenticated):
            set_consumer(ctx, outcome.consumer, outcome.credential, outcome.identifier, outcome.values)
            return
        anonymous = config.get("anonymous")
        if not anonymous:
            ctx.exit(outcome.status, outcome.body, outcome.headers)
            return
        consumer = ctx.consumers.get(anonymous)
        if consumer is None:
            message = f"anonymous consumer {anonymous} is configured but doesn't exist"
            ctx.log.error("{message}", message=message)
            ctx.exit(500, {"message": message})
            return
        set_consumer(ctx, consumer)

    @staticmethod
    def owner(ctx: Any, credential: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """
        The consumer C{credential} belongs to, from the snapshot.
        """
        reference = credential.get("consumer") or {}
        consumer: Mapping[str, Any] | None = ctx.consumers.by_id(reference.get("id"))
        return consumer
