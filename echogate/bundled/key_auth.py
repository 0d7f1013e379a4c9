"""
key-auth: authenticate requests by an API key, as Kong's key-auth does.

The key is looked for under each of C{key_names} in turn: in the request
headers, then the query string, then (with C{key_in_body}) a URL-encoded,
JSON or multipart body. Keys are the consumers' C{keyauth_credentials},
found by one dict lookup in the configuration snapshot.

Answers, as Kong: 401 C{{"message": "No API key found in request"}}, 401
C{{"message": "Unauthorized"}} for an unknown key, 401 C{{"message":
"Duplicate API key found"}} when a key name carries several values; each
with C{WWW-Authenticate: Key} (C{Key realm="..."} with C{realm}).

With C{hide_credentials}, every copy of every key name is taken out of
the request sent to the service before the key is checked (L{hide_keys}).
Whatever the config, the key names are marked for redaction in the log
records of the request (L{echogate.bundled.log_record.redact_in_logs}).
"""
from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any, Mapping
from urllib.parse import urlencode

from multipart import parse_options_header
from twisted.internet.defer import Deferred

from echogate.bundled.consumers import (
    IDENTITY_NAMES,
    UNAUTHORIZED,
    Authenticated,
    AuthPlugin,
    Refused,
    identity_lines,
    identity_values,
    refused,
    remove_query_arg,
)
from echogate.bundled.log_record import MARKED, lowered_names, redact_in_logs
from echogate.entities import credentials
from echogate.errors import GatewayError
from echogate.pdk.bodies import parse_body
from echogate.schema import Array, Boolean, Record, String

NO_KEY = "No API key found in request"
DUPLICATE = "Duplicate API key found"

#: How many credentials' outcomes L{KeyAuth} keeps for one snapshot (then
#: it starts again).
_MAX_KNOWN = 10_000


def header_name(value: str) -> str | None:
    """
    Kong's check for a header name (C{typedefs.header_name}).
    """
    if all(c.isascii() and (c.isalnum() or c in "-_") for c in value):
        return None
    return f"bad header name '{value}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"


def _body_values(ctx: Any) -> dict[str, Any]:
    """
    The request body's parameters (name to a value or a list of values),
    or nothing when it cannot be read as a form or a JSON object.
    """
    try:
        body = parse_body(ctx.request.get_header("content-type"), ctx.request.body())
    except GatewayError:
        return {}
    if body.json is not None:
        return dict(body.json)
    values: dict[str, Any] = {}
    for name, value in body.pairs or ():
        if name in values:
            previous = values[name]
            values[name] = previous + [value] if isinstance(previous, list) else [previous, value]
        else:
            values[name] = value
    return values


def _multipart(pairs: list[tuple[str, str]], content_type: str) -> bytes:
    boundary = parse_options_header(content_type)[1]["boundary"]
    out = []
    for name, value in pairs:
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{quoted}"\r\n\r\n{value}\r\n')
    out.append(f"--{boundary}--\r\n")
    return "".join(out).encode("utf-8")


def _without(ctx: Any, names: frozenset[str]) -> None:
    """
    Send the service the body without the parameters called any of
    C{names} (a multipart body is sent again with its text parts only).
    The body is the one going upstream: the client's, or one an earlier
    plugin set.
    """
    content_type = ctx.request.get_header("content-type") or ""
    upstream = ctx.upstream
    source = upstream.body if upstream.body is not None else ctx.request.body()
    try:
        body = parse_body(content_type, source)
    except GatewayError:
        return
    if body.json is not None:
        if not isinstance(body.json, Mapping) or not names.intersection(body.json):
            return
        data = {k: v for k, v in body.json.items() if k not in names}
        encoded = json.dumps(data).encode("utf-8")
    else:
        pairs = list(body.pairs or ())
        kept = [(k, v) for k, v in pairs if k not in names]
        if len(kept) == len(pairs):
            return
        if content_type.lower().startswith("multipart/"):
            encoded = _multipart(kept, content_type)
        else:
            encoded = urlencode(kept).encode("utf-8")
    upstream.set_body(encoded)


def hide_keys(ctx: Any, config: Mapping[str, Any]) -> None:
    """
    Take every copy of the key out of the request sent to the service:
    each of C{key_names} as a header (any case, every line), as a query
    argument (every occurrence, compared decoded) and, with C{key_in_body},
    as a body parameter; each only where C{config} says the key is looked
    for. Done before the key is checked, so that no outcome (a duplicate
    key, an unknown key with C{anonymous}, a request authenticated by an
    earlier plugin, a preflight let through) sends a key on.
    """
    upstream = ctx.upstream
    names = config["key_names"]
    if config["key_in_header"]:
        for name in names:
            upstream.remove_header(name)
    if config["key_in_query"] and upstream.query:
        query = upstream.query
        for name in names:
            query = remove_query_arg(query, name)
        if query != upstream.query:
            upstream.set_query(query)
    if config["key_in_body"]:
        _without(ctx, frozenset(names))


def _challenge(config: Mapping[str, Any]) -> str:
    """
    The C{WWW-Authenticate} challenge of a refusal.
    """
    realm = config.get("realm")
    return f'Key realm="{realm}"' if realm else "Key"


class KeyAuth(AuthPlugin):
    """
    Kong's key-auth (priority 1250).

    A credential's consumer is looked up once per configuration snapshot:
    the L{Authenticated} of each credential seen is kept with the
    snapshot's credentials (C{ctx.credentials}) until another snapshot
    comes (L{_known}).
    """

    _known: list[Any]
    #: What each read-only config (a snapshot's, by id) says, worked out
    #: once: C{(config, key_names, their lower case for the log records,
    #: usual)}, C{usual} when L{access} may take the key from the first
    #: name's header without L{authenticate_request}.
    _prepared: dict[int, tuple[Any, ...]]

    def __init__(self) -> None:
        # (The plugin cannot be changed once made: this list is its one
        # slot, holding the snapshot's credentials, by credential id each
        # credential seen and its outcome, and each key that found one and
        # its outcome.)
        object.__setattr__(self, "_known", [None, {}, {}])
        object.__setattr__(self, "_prepared", {})

    name = "key-auth"
    version = "1.0.0"
    priority = 1250
    #: Its credentials, an entity it owns (stored in a table of their own).
    entities = (credentials.KEYAUTH_ENTITY,)
    config_schema = Record({
        "key_names": Array(String(check=header_name), required=True, default=["apikey"],
                           description="Header, query and body parameter names the key is looked for under."),
        "hide_credentials": Boolean(required=True, default=False,
                                    description="Remove the key from the request sent to the service."),
        "anonymous": String(description="A consumer (id or username) for requests that fail to authenticate."),
        "key_in_header": Boolean(required=True, default=True, description="Look for the key in headers."),
        "key_in_query": Boolean(required=True, default=True, description="Look for the key in the query string."),
        "key_in_body": Boolean(required=True, default=False,
                               description="Look for the key in a form, JSON or multipart body."),
        "run_on_preflight": Boolean(required=True, default=True,
                                    description="Authenticate OPTIONS requests too."),
        "realm": String(description="The realm of the WWW-Authenticate challenge."),
    })

    def reads_body(self, config: Mapping[str, Any], request: Any) -> bool:
        """
        The body is read in access only to look for the key there.
        """
        return bool(config["key_in_body"])

    def _prepare(self, config: Mapping[str, Any]) -> tuple[Any, ...]:
        """
        What L{access} reads of C{config}, kept for a read-only config (a
        snapshot's, which lives as long as it does).
        """
        names = config["key_names"]
        usual = bool(config["key_in_header"] and config.get("run_on_preflight", True)
                      and not config.get("anonymous") and not config["hide_credentials"] and names)
        found = (config, names, lowered_names(names), usual)
        if isinstance(config, MappingProxyType):
            prepared = self._prepared
            if len(prepared) >= _MAX_KNOWN:
                prepared.clear()
            prepared[id(config)] = found
        return found

    def access(self, ctx: Any, config: Mapping[str, Any]) -> Deferred | None:
        """
        Tell the log plugins the key names (they redact them), hide the
        key from the service with C{hide_credentials}, then authenticate.
        """
        prepared = self._prepared.get(id(config))
        if prepared is None or prepared[0] is not config:
            prepared = self._prepare(config)
        _, names, lowered, usual = prepared
        shared = ctx.shared
        if MARKED in shared:
            redact_in_logs(ctx, names)
        else:
            # (redact_in_logs, inline for the first plugin to mark names)
            shared[MARKED] = lowered
        if usual:
            # A key seen before in the first name's header (one value):
            # its outcome, kept for the snapshot by the key
            # (authenticate_request would find the same).
            values = ctx.request.get_header_values(names[0])
            if len(values) == 1:
                known = self._known
                outcome = known[2].get(values[0]) if known[0] is ctx.credentials else None
                if outcome is not None:
                    ctx.authenticate(outcome.consumer, outcome.credential)
                    ctx.upstream.set_named(IDENTITY_NAMES, outcome.values)
                    return None
        elif config["hide_credentials"]:
            hide_keys(ctx, config)
        if config.get("run_on_preflight", True) and not config.get("anonymous"):
            # (AuthPlugin.access for the usual config, inline: an
            # authenticated request's consumer and identity headers set
            # at once.)
            outcome = self.authenticate_request(ctx, config)
            if type(outcome) is Authenticated:
                values = outcome.values
                ctx.authenticate(outcome.consumer, outcome.credential)
                ctx.upstream.set_named(IDENTITY_NAMES, values if values is not None else identity_values(
                    outcome.consumer, outcome.credential, outcome.identifier))
                return None
            if type(outcome) is not Refused and isinstance(outcome, Deferred):
                return outcome.addCallback(self._conclude, ctx, config)
            self._conclude(outcome, ctx, config)
            return None
        return super().access(ctx, config)

    def authenticate_request(self, ctx: Any, config: Mapping[str, Any]) -> Authenticated | Refused:
        request = ctx.request
        body: dict[str, Any] | None = None
        key = None
        for name in config["key_names"]:
            value: Any = None
            if config["key_in_header"]:
                value = request.get_header_values(name) or None
            if value is None and config["key_in_query"]:
                value = request.query_args.get(name)
            if value is None and config["key_in_body"]:
                if body is None:
                    body = _body_values(ctx)
                value = body.get(name)
            if isinstance(value, list):
                if len(value) > 1:
                    return refused(DUPLICATE, _challenge(config))
                value = value[0] if value else None
            if isinstance(value, str):
                key = value
                break
        if not key:
            return refused(NO_KEY, _challenge(config))
        index = ctx.credentials
        credential = index.find("key-auth", key)
        if credential is None:
            return refused(UNAUTHORIZED, _challenge(config))
        known = self._known
        if known[0] is not index:
            known[:] = [index, {}, {}]
        outcomes = known[1]
        seen = outcomes.get(id(credential))
        if seen is not None and seen[0] is credential:
            outcome: Authenticated = seen[1]
            by_key = known[2]
            if len(by_key) >= _MAX_KNOWN:
                by_key.clear()
            by_key[key] = outcome
            return outcome
        consumer = self.owner(ctx, credential)
        if consumer is None:
            return refused(UNAUTHORIZED, _challenge(config))
        identifier = credential["id"]
        outcome = Authenticated(consumer, credential, identifier,
                                identity_lines(consumer, credential, identifier))
        if len(outcomes) >= _MAX_KNOWN:
            outcomes.clear()
        outcomes[id(credential)] = (credential, outcome)
        by_key = known[2]
        if len(by_key) >= _MAX_KNOWN:
            by_key.clear()
        by_key[key] = outcome
        return outcome
