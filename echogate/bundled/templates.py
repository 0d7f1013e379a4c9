"""
request-transformer's value templates: C{$(...)} inside a config value is
replaced by a value of the client's request.

Kong renders these with Lua (sandboxed). echogate accepts the lookups
Kong's documentation describes, plus literals and C{or}, and nothing else,
so a template cannot run code:

    $(headers.x_api_key)           a request header (C{_} also finds C{-})
    $(headers["X-Api-Key"])        the same, any name
    $(query_params.page)           a query argument of the client's request
    $(uri_captures.user)           a named group of the route's regex path
    $(uri_captures[1])             a numbered group (0: the whole match)
    $(shared.name)                 a value a plugin put in ctx.shared
    $('$(literal)')                a string literal (how to write C{$(})
    $(headers.a or query_params.a or "none")

A value that is absent renders as the empty string; a header or argument
given several times renders its values joined with C{", "}.
"""
from __future__ import annotations

import functools
import re
from typing import Any, Callable, Mapping, Sequence

import attrs

ROOTS = ("headers", "query_params", "uri_captures", "shared")

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<number>\d+)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<punct>[.\[\]])
      | (?P<other>\S)
    )""",
    re.X,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"'}


class TemplateError(ValueError):
    """
    A template that echogate cannot render.
    """


@attrs.frozen
class Lookup:
    """
    C{root.key} or C{root[key]}.
    """

    root: str
    key: str | int


@attrs.frozen
class Literal:
    value: str | int


Term = Lookup | Literal


@attrs.frozen
class Template:
    """
    A compiled template: literal text and expressions (each a list of
    alternatives joined by C{or}), in order.
    """

    source: str
    parts: tuple[str | tuple[Term, ...], ...]

    @property
    def is_plain(self) -> bool:
        """
        Whether there is nothing to render.
        """
        return all(isinstance(p, str) for p in self.parts)

    def render(self, env: "TemplateEnvironment") -> str:
        """
        The template's text with every expression replaced.
        """
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            out.append(_text(_evaluate(part, env)))
        return "".join(out)


def _unquote(token: str) -> str:
    body = token[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


def _tokens(expression: str) -> list[tuple[str, str]]:
    out = []
    position = 0
    expression = expression.rstrip()
    while position < len(expression):
        found = _TOKEN.match(expression, position)
        if found is None:
            raise TemplateError(f"unexpected {expression[position:].strip()[:20]!r}")
        kind = found.lastgroup or ""
        out.append((kind, found.group(kind)))
        position = found.end()
    return out


def _parse_term(tokens: list[tuple[str, str]], index: int) -> tuple[Term, int]:
    if index >= len(tokens):
        raise TemplateError("an expression is missing")
    kind, text = tokens[index]
    if kind == "string":
        return Literal(_unquote(text)), index + 1
    if kind == "number":
        return Literal(int(text)), index + 1
    if kind != "name" or text == "or":
        raise TemplateError(f"unexpected {text!r}")
    if text not in ROOTS:
        raise TemplateError(f"unknown name {text!r} (use one of: {', '.join(ROOTS)})")
    rest = tokens[index + 1:index + 4]
    if len(rest) >= 2 and rest[0] == ("punct", ".") and rest[1][0] == "name":
        return Lookup(text, rest[1][1]), index + 3
    if len(rest) == 3 and rest[0] == ("punct", "[") and rest[2] == ("punct", "]") \
            and rest[1][0] in ("string", "number"):
        key: str | int = _unquote(rest[1][1]) if rest[1][0] == "string" else int(rest[1][1])
        return Lookup(text, key), index + 4
    raise TemplateError(f"{text} must be followed by .name or [\"name\"]")


def _parse_expression(expression: str) -> tuple[Term, ...]:
    tokens = _tokens(expression)
    terms = []
    term, index = _parse_term(tokens, 0)
    terms.append(term)
    while index < len(tokens):
        if tokens[index] != ("name", "or"):
            raise TemplateError(f"unexpected {tokens[index][1]!r}")
        term, index = _parse_term(tokens, index + 1)
        terms.append(term)
    return tuple(terms)


def _closing(source: str, start: int) -> int:
    depth = 0
    for position in range(start, len(source)):
        char = source[position]
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return position
    raise TemplateError("unbalanced parentheses")


@functools.lru_cache(maxsize=1024)
def compile_template(source: str) -> Template:
    """
    Compile C{source} once (cached).

    @raise TemplateError: an expression echogate does not support.
    """
    parts: list[str | tuple[Term, ...]] = []
    position = 0
    while True:
        start = source.find("$(", position)
        if start < 0:
            break
        end = _closing(source, start + 1)
        if start > position:
            parts.append(source[position:start])
        parts.append(_parse_expression(source[start + 2:end]))
        position = end + 1
    if position < len(source):
        parts.append(source[position:])
    return Template(source, tuple(parts))


def check_template(source: str) -> str | None:
    """
    A schema check: C{None} when C{source} compiles, else Kong's message.
    """
    try:
        compile_template(source)
    except TemplateError as e:
        return f"value '{source}' is not in supported format, error:{e}"
    return None


class TemplateEnvironment:
    """
    What templates read: the client's headers and query arguments, the
    route's regex captures, and C{ctx.shared}, each looked up lazily.

    @param headers: a callable returning lower-case name to values.
    @param query: a callable returning name to value (a string, C{True}
        for a name without C{=}, or a list).
    @param captures: the whole match, then the groups in order.
    @param named: named groups.
    @param shared: C{ctx.shared}.
    """

    def __init__(self, headers: Callable[[], Mapping[str, Sequence[str]]], query: Callable[[], Mapping[str, Any]],
                 captures: Sequence[str | None] = (), named: Mapping[str, str | None] | None = None,
                 shared: Mapping[str, Any] | None = None):
        self._headers_source = headers
        self._query_source = query
        self._headers: Mapping[str, Sequence[str]] | None = None
        self._query: Mapping[str, Any] | None = None
        self._captures = captures
        self._named = named or {}
        self._shared = shared or {}

    def lookup(self, root: str, key: str | int) -> Any:
        if root == "headers":
            if self._headers is None:
                self._headers = self._headers_source()
            name = str(key).lower()
            values = self._headers.get(name)
            if values is None and "_" in name:
                values = self._headers.get(name.replace("_", "-"))
            return list(values) if values else None
        if root == "query_params":
            if self._query is None:
                self._query = self._query_source()
            return self._query.get(str(key))
        if root == "uri_captures":
            if isinstance(key, int):
                return self._captures[key] if 0 <= key < len(self._captures) else None
            return self._named.get(key)
        return self._shared.get(str(key))


def _evaluate(terms: tuple[Term, ...], env: TemplateEnvironment) -> Any:
    value: Any = None
    for term in terms:
        value = term.value if isinstance(term, Literal) else env.lookup(term.root, term.key)
        if value is not None and value is not False:
            return value
    return value


def _text(value: Any) -> str:
    if value is None or value is False:
        return ""
    if value is True:
        return "true"
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value)
    return str(value)
