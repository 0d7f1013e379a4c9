"""
request-transformer: change the request before it reaches the service.

Headers, the query string and the body (JSON, URL-encoded or multipart
forms) are changed in Kong's order: remove, rename, replace, add, append;
the path can be replaced (C{replace.uri}) and the method changed
(C{http_method}). Values may be templates over the client's request (see
L{echogate.bundled.templates}); templates read the request as the client
sent it, never the result of an earlier operation.

Within one request the order of the parts is Kong's: the path, the
method, headers, the body, the query string.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Callable, Mapping
from urllib.parse import quote

import attrs

from echogate._version import __version__
from echogate.bundled.request_bodies import FORM, body_kind, has_body_operations, transform_body
from echogate.bundled.templates import TemplateEnvironment, check_template, compile_template
from echogate.bundled.transforms import (
    COLON_PAIR,
    Table,
    check_header_entry,
    check_header_rename,
    pairs,
    split_pair,
    strings,
)
from echogate.plugin import GatewayPlugin
from echogate.schema import Record, String

_HOST = "host"
_QUERY_METHODS = ("GET", "HEAD", "TRACE")


def _check_value(entry: str) -> str | None:
    """
    Kong's check for C{name:value} entries of the body and query string:
    the value is present and is a template echogate can render.
    """
    name, value = split_pair(entry)
    if value is None:
        return f"key '{name}' has no value"
    return check_template(value)


def _check_header_value(entry: str) -> str | None:
    message = check_header_entry(entry)
    if message is not None:
        return message
    _, value = split_pair(entry)
    return check_template(value) if value is not None else None


def _check_uri(value: str) -> str | None:
    message = check_template(value)
    if message is not None:
        return message
    if compile_template(value).is_plain and not value.startswith("/"):
        return "should start with: /"
    return None


def _values(description: str) -> Record:
    return Record({
        "body": strings(f"Body parameters to {description}, as name:value.", check=_check_value),
        "headers": strings(f"Headers to {description}, as name:value.", check=_check_header_value,
                           match=COLON_PAIR),
        "querystring": strings(f"Query arguments to {description}, as name:value.", check=_check_value),
    })


def _environment(ctx: Any) -> TemplateEnvironment:
    match = ctx.match
    captures: tuple = ()
    named: Mapping[str, Any] = {}
    if match is not None and match.matched_path is not None and match.matched_path.startswith("~"):
        captures = (match.stripped,) + tuple(match.captures)
        named = match.named_captures

    def query() -> Mapping[str, Any]:
        items = Table.parse(ctx.request.query).items
        return {k: (True if v is None else v) for k, v in items.items()}

    return TemplateEnvironment(ctx.request.get_headers, query, captures, named, ctx.shared)


def _renderer(env: TemplateEnvironment) -> Callable[[str | None], str | None]:
    def render(value: str | None) -> str | None:
        if value is None:
            return None
        template = compile_template(value)
        return value if template.is_plain else template.render(env)

    return render


def _as_is(value: str | None) -> str | None:
    return value


_OPERATIONS = ("remove", "rename", "replace", "add", "append")


@attrs.frozen
class _Plan:
    """
    What a config asks for, worked out once (L{_plan_of}): whether any
    value is a template (C{templated}), whether there is anything to do to
    the headers, the body and the query string, and the header operations
    with Kong's entries split and the C{Host} exceptions applied.
    """

    templated: bool
    headers: bool
    body: bool
    query: bool
    remove_headers: tuple[str, ...]
    rename_headers: tuple[tuple[str, str], ...]
    replace_headers: tuple[tuple[str, str | None], ...]
    add_headers: tuple[tuple[str, str | None], ...]
    append_headers: tuple[tuple[str, str | None], ...]
    #: The config only adds headers, without templates (no path, method,
    #: body or query string): what L{RequestTransformer.access} does
    #: first.
    adds_only: bool = False

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> "_Plan":
        values = [config["replace"]["uri"]] + [
            value for op in _OPERATIONS if op != "remove" for kind in ("body", "headers", "querystring")
            for _, value in pairs(config[op][kind])]
        templated = any(value is not None and not compile_template(value).is_plain for value in values)
        remove = tuple(name for name, _ in pairs(config["remove"]["headers"]) if name.lower() != _HOST)
        rename = tuple((old, new) for old, new in pairs(config["rename"]["headers"])
                       if new is not None and old.lower() not in (_HOST, new.lower()))
        replace = tuple(pairs(config["replace"]["headers"]))
        add = tuple((name, value) for name, value in pairs(config["add"]["headers"]) if name.lower() != _HOST)
        append = tuple((name, value) for name, value in pairs(config["append"]["headers"])
                       if name.lower() != _HOST)
        body = has_body_operations(config)
        query = any(config[op]["querystring"] for op in _OPERATIONS)
        adds_only = (not (templated or body or query or remove or rename or replace or append)
                     and config["replace"]["uri"] is None and config["http_method"] is None)
        return cls(templated=templated, headers=bool(remove or rename or replace or add or append),
                   body=body, query=query, remove_headers=remove, rename_headers=rename, replace_headers=replace,
                   add_headers=add, append_headers=append, adds_only=adds_only)


#: The plans of read-only configs, by C{id} (each kept with its config).
_PLANS: dict[int, tuple[Mapping[str, Any], _Plan]] = {}
_MAX_PLANS = 10_000


def _plan_of(config: Mapping[str, Any]) -> _Plan:
    """
    C{config}'s L{_Plan}: worked out once for a read-only config (a
    snapshot's, which lives as long as the snapshot), each time for any
    other mapping.
    """
    if not isinstance(config, MappingProxyType):
        return _Plan.of(config)
    found = _PLANS.get(id(config))
    if found is not None and found[0] is config:
        return found[1]
    if len(_PLANS) >= _MAX_PLANS:
        _PLANS.clear()
    plan = _Plan.of(config)
    _PLANS[id(config)] = (config, plan)
    return plan


class RequestTransformer(GatewayPlugin):
    """
    Kong's request-transformer.
    """

    name = "request-transformer"
    version = __version__
    priority = 801
    config_schema = Record({
        "http_method": String(match=r"^[A-Z]+$",
                              description="The method to call the service with (upper case); null keeps the client's."),
        "remove": Record({
            "body": strings("Body parameters to remove."),
            "headers": strings("Headers to remove.", check=check_header_entry),
            "querystring": strings("Query arguments to remove."),
        }),
        "rename": Record({
            "body": strings("Body parameters to rename, as old:new.", check=_check_value),
            "headers": strings("Headers to rename, as old:new.", check=check_header_rename, match=COLON_PAIR),
            "querystring": strings("Query arguments to rename, as old:new.", check=_check_value),
        }),
        "replace": _values("replace (only when present)").with_field(
            "uri", String(check=_check_uri, description="The path to send upstream instead (a template).")),
        "add": _values("add (only when absent)"),
        "append": _values("append (a further value)"),
    })

    def reads_body(self, config: Mapping[str, Any], request: Any) -> bool:
        """
        The body is read to change it, or to move a form body into the
        query string when the method changes.
        """
        return has_body_operations(config) or config["http_method"] is not None

    def access(self, ctx: Any, config: Mapping[str, Any]) -> None:
        # (_plan_of, inline for a config seen before)
        found = _PLANS.get(id(config))
        plan = found[1] if found is not None and found[0] is config else _plan_of(config)
        if plan.adds_only:
            # (_headers for a config that only adds headers)
            upstream = ctx.upstream
            for name, value in plan.add_headers:
                if value is not None and upstream.get_header(name) is None:
                    upstream.add_header(name, value)
            return
        # (Without a template in the config, every value renders as itself:
        # no environment to make.)
        render = _renderer(_environment(ctx)) if plan.templated else _as_is
        uri = config["replace"]["uri"]
        if uri is not None:
            path = render(uri) or ""
            ctx.upstream.set_path(quote(path, safe="/:@!$&'()*+,;=-._~%"))
        if config["http_method"] is not None:
            self._method(ctx, config["http_method"])
        if plan.headers:
            self._headers(ctx, plan, render)
        if plan.body:
            self._body(ctx, config, render)
        if plan.query:
            self._query(ctx, config, render)

    def _method(self, ctx: Any, method: str) -> None:
        ctx.upstream.set_method(method)
        if method not in _QUERY_METHODS or body_kind(ctx.request.get_header("content-type")) != FORM:
            return
        body = Table.parse(ctx.request.body().decode("utf-8", "replace"))
        if not body.items:
            return
        query = Table.parse(ctx.upstream.query)
        for name, value in body.items.items():
            for one in value if isinstance(value, list) else [value]:
                if name in query:
                    query.append(name, one)
                else:
                    query.items[name] = one
        ctx.upstream.set_query(query.encode())

    def _headers(self, ctx: Any, plan: _Plan, render: Callable) -> None:
        upstream = ctx.upstream
        if plan.remove_headers:
            upstream.remove_headers(plan.remove_headers)
        for old, new in plan.rename_headers:
            values = upstream.headers.getRawHeaders(old.encode("latin-1"))
            if values is not None:
                upstream.remove_header(old)
                upstream.headers.setRawHeaders(new.encode("latin-1"), values)
        for name, value in plan.replace_headers:
            value = render(value)
            if value is not None and (name.lower() == _HOST or upstream.get_header(name) is not None):
                upstream.set_header(name, value)
        for name, value in plan.add_headers:
            value = render(value)
            if value is not None and upstream.get_header(name) is None:
                # (absent: adding it is setting it, without looking again)
                upstream.add_header(name, value)
        for name, value in plan.append_headers:
            value = render(value)
            if value is not None:
                upstream.add_header(name, value)

    def _body(self, ctx: Any, config: Mapping[str, Any], render: Callable) -> None:
        content_type = ctx.request.get_header("content-type")
        if body_kind(content_type) is None:
            return
        body = transform_body(config, content_type, ctx.request.body(), render)
        if body is not None:
            ctx.upstream.set_body(body)

    def _query(self, ctx: Any, config: Mapping[str, Any], render: Callable) -> None:
        query = Table.parse(ctx.upstream.query)
        for name, _ in pairs(config["remove"]["querystring"]):
            query.remove(name)
        for old, new in pairs(config["rename"]["querystring"]):
            new = render(new)
            if new is not None:
                query.rename(old, new)
        for name, value in pairs(config["replace"]["querystring"]):
            value = render(value)
            if value is not None:
                query.replace(name, value)
        for name, value in pairs(config["add"]["querystring"]):
            value = render(value)
            if value is not None:
                query.add(name, value)
        for name, value in pairs(config["append"]["querystring"]):
            value = render(value)
            if value is not None:
                query.append(name, value)
        ctx.upstream.set_query(query.encode())
