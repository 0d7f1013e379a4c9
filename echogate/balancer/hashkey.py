"""
The hash key of a request for a consistent-hashing upstream, by the
upstream's C{hash_on} / C{hash_fallback} settings (Kong's rules).

C{hash_on} names where the key comes from: C{consumer} (the consumer's id,
else the credential's), C{ip} (the client address), C{header}
(C{hash_on_header}; several values join with C{", "}), C{cookie}
(C{hash_on_cookie}), C{path}, C{query_arg} (C{hash_on_query_arg}; several
values are sorted and joined with C{","}, an argument without a value is
C{""}) or C{uri_capture} (C{hash_on_uri_capture}, a named or numbered
capture of the route's path regex). When that part of the request is
missing, C{hash_fallback} is tried the same way with the C{hash_fallback_*}
fields; when that is missing too, or either is C{none}, there is no key.
A missing C{cookie} is never a miss: a new value is made, used as the key,
and handed back to be set on the response (C{hash_on_cookie_path}), so the
client's next requests hash the same way.
"""
from __future__ import annotations

import uuid
from typing import Any, Callable, Mapping, Sequence, Union

import attrs

_Values = Union[str, Sequence[str], None]


def _none(name: str) -> _Values:
    return None


@attrs.frozen
class RequestView:
    """
    The parts of a request a hash key may come from.

    @ivar consumer_id: the authenticated consumer's id.
    @ivar credential_id: the authenticated credential's id.
    @ivar client_ip: the client's address.
    @ivar path: the request's normalised path.
    @ivar header: a header's value(s) by name (case-insensitive), or C{None}.
    @ivar cookie: a cookie's value by name, or C{None}.
    @ivar query_arg: a query argument's value(s) by name, or C{None}.
    @ivar uri_captures: the route's path captures, by name or number.
    """

    consumer_id: str | None = None
    credential_id: str | None = None
    client_ip: str | None = None
    path: str | None = None
    header: Callable[[str], _Values] = _none
    cookie: Callable[[str], _Values] = _none
    query_arg: Callable[[str], _Values] = _none
    uri_captures: Mapping[Any, str | None] = attrs.field(factory=dict)


@attrs.frozen
class HashCookie:
    """
    A cookie to set on the response: the key that was made for a client
    without one.
    """

    name: str
    value: str
    path: str


@attrs.frozen
class HashKey:
    """
    A request's hash key, and the cookie to set when the key was made.
    """

    value: str | None
    cookie: HashCookie | None = None


def _joined(values: _Values, separator: str, sort: bool) -> str | None:
    if values is None or isinstance(values, str):
        return values
    items = [str(value) for value in values]
    if not items:
        return None
    return separator.join(sorted(items) if sort else items)


def _capture(captures: Mapping[Any, str | None], group: Any) -> str | None:
    value = captures.get(group)
    if value is None and isinstance(group, str) and group.isdigit():
        value = captures.get(int(group))
    return value


def _lookup(source: str, upstream: Mapping[str, Any], prefix: str,
            request: RequestView) -> str | None:
    if source == "consumer":
        return request.consumer_id or request.credential_id
    if source == "ip":
        return request.client_ip
    if source == "header":
        return _joined(request.header(str(upstream.get(f"{prefix}_header"))), ", ", False)
    if source == "cookie":
        return _joined(request.cookie(str(upstream.get("hash_on_cookie"))), ",", False)
    if source == "path":
        return request.path
    if source == "query_arg":
        return _joined(request.query_arg(str(upstream.get(f"{prefix}_query_arg"))), ",", True)
    if source == "uri_capture":
        return _capture(request.uri_captures, upstream.get(f"{prefix}_uri_capture"))
    return None


def hash_key(upstream: Mapping[str, Any], request: RequestView,
             new_value: Callable[[], str] = lambda: str(uuid.uuid4())) -> HashKey:
    """
    The hash key of C{request} for C{upstream} (an upstream record).

    @param new_value: makes the value of a missing C{hash_on_cookie}.
    """
    for field, prefix in (("hash_on", "hash_on"), ("hash_fallback", "hash_fallback")):
        source = upstream.get(field) or "none"
        if source == "none":
            return HashKey(None)
        value = _lookup(source, upstream, prefix, request)
        if value is not None:
            return HashKey(value)
        if source == "cookie":
            cookie = HashCookie(str(upstream.get("hash_on_cookie")), new_value(),
                                str(upstream.get("hash_on_cookie_path") or "/"))
            return HashKey(cookie.value, cookie)
    return HashKey(None)
