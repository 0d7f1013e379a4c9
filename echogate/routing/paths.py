"""
Request paths: normalising the path a client sent, and building the path
sent upstream from it.

The proxy normalises a request's path once, before routing, with
L{normalize_path}; the router matches routes against the normalised path
(regex paths compiled with L{compile_regex_path}) and L{join_upstream_path}
turns it into the upstream path, following Kong's rules (C{path_handling}
C{v0}). See C{docs/routing.md}.
"""
from __future__ import annotations

import re

import regex

# RFC 3986 unreserved characters: decoded when percent-encoded.
_UNRESERVED = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
)

# Reserved characters (Kong's list in kong/tools/uri.lua): never decoded,
# since decoding them changes what the path means (C{%2F} is not C{/}).
_RESERVED = frozenset("!*'();:@&=+$,/?%#[]")

# Reserved characters that may appear literally in a normalised path.
# C{%} only starts an escape; C{?} and C{#} cannot be part of a path.
_RAW_RESERVED = _RESERVED - frozenset("%?#")

_HEX = frozenset("0123456789abcdefABCDEF")

# A path made only of unreserved and literal reserved characters: its
# canonical form is itself.
_PLAIN = re.compile(rb"[A-Za-z0-9\-._~!*'();:@&=+$,/\[\]]*")


def _escape(byte: int) -> str:
    return "%%%02X" % (byte,)


def _canonical_bytes(raw: bytes) -> str:
    """
    Decode the percent-encodings of unreserved characters, upper-case every
    other percent-encoding, and percent-encode every byte that may not
    appear literally in a path.

    @raise ValueError: on a malformed percent-encoding, a control
        character, or a C{?} or C{#}.
    """
    out: list[str] = []
    i = 0
    n = len(raw)
    while i < n:
        byte = raw[i]
        char = chr(byte)
        if char == "%":
            hexdigits = raw[i + 1:i + 3].decode("latin-1")
            if len(hexdigits) != 2 or not set(hexdigits) <= _HEX:
                raise ValueError(
                    f"bad percent-encoding at offset {i} of the request path"
                )
            value = int(hexdigits, 16)
            if chr(value) in _UNRESERVED:
                out.append(chr(value))
            else:
                out.append(_escape(value))
            i += 3
            continue
        if byte < 0x20 or byte == 0x7F:
            raise ValueError("control character in the request path")
        if char in "?#":
            raise ValueError(f"{char!r} in the request path")
        if char in _UNRESERVED or char in _RAW_RESERVED:
            out.append(char)
        else:
            out.append(_escape(byte))
        i += 1
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    """
    Resolve C{.} and C{..} segments of an absolute path (RFC 3986, section
    5.2.4), never going above the root. Empty segments are kept.
    """
    segments = path[1:].split("/")
    if "." not in segments and ".." not in segments:
        return path
    last = len(segments) - 1
    out: list[str] = []
    for index, segment in enumerate(segments):
        if segment == ".":
            if index == last:
                out.append("")
        elif segment == "..":
            if out:
                out.pop()
            if index == last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)


_SLASHES = re.compile(r"//+")


def normalize_path(raw: str | bytes) -> str:
    """
    Normalise a request path as received (percent-encoded, without the
    query string), once, before routing.

    Percent-encoded unreserved characters are decoded (C{%2e} becomes
    C{.}, C{%41} becomes C{A}); every other percent-encoding is kept, with
    upper-case hex (C{%2f} becomes C{%2F}); bytes that may not appear
    literally in a path (a space, C{"}, C{<}, non-ASCII...) are
    percent-encoded, non-ASCII characters of a C{str} as UTF-8. Then
    repeated slashes are merged into one (as nginx's C{merge_slashes} and
    Kong do before routing: C{//admin/x} is C{/admin/x}, so a route's
    plugins cannot be walked around with an extra slash; an encoded C{%2F}
    stays as it is), and C{.} and C{..} segments are resolved, never above
    the root. Nothing else changes.

    The result is ASCII, starts with C{/}, and is its own normalisation.

    @param raw: the path; C{bytes} are taken byte for byte.
    @return: the normalised path.
    @raise ValueError: when the path cannot be normalised: it does not
        start with C{/}, holds a malformed percent-encoding (C{%zz},
        C{%4}), a control character, a C{?} or a C{#}. The proxy answers
        400.
    """
    if isinstance(raw, str):
        try:
            data = raw.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError("the request path is not valid text") from e
    else:
        data = bytes(raw)
    if not data.startswith(b"/"):
        raise ValueError("the request path does not start with /")
    if _PLAIN.fullmatch(data):
        # Nothing to decode or escape (the common case): only dot segments,
        # which need a "/." to exist.
        path = data.decode("ascii")
        if "//" in path:
            path = _SLASHES.sub("/", path)
        return _remove_dot_segments(path) if "/." in path else path
    return _remove_dot_segments(_SLASHES.sub("/", _canonical_bytes(data)))


def normal_form_problem(path: str) -> str | None:
    """
    Why C{path}, written in a configuration, is not in the normal form
    requests are compared in (Kong's message, naming the normal form), or
    C{None} when it is.
    """
    try:
        normal = normalize_path(path)
    except ValueError:
        return f"invalid value: {path}"
    if normal != path:
        return f"non-normalized path, consider use '{normal}' instead"
    return None


def _sanitize_postfix(postfix: str) -> str:
    """
    Drop a leading dot segment left over after a prefix was stripped
    (C{/route./x} matched by C{/route} leaves C{./x}), as Kong does.
    """
    if postfix in (".", ".."):
        return ""
    if postfix.startswith("./"):
        return postfix[2:]
    if postfix.startswith("../"):
        return postfix[3:]
    return postfix


def join_upstream_path(
    service_path: str | None, request_path: str, stripped: str, strip_path: bool
) -> str:
    """
    The path to send upstream, following Kong's rules (C{path_handling}
    C{v0}).

    With C{strip_path}, the matched prefix is removed from the request path
    and the rest is joined to the service's path with exactly one slash
    between them; without it, the whole request path is appended to the
    service's path. A trailing slash on the request survives; a trailing
    slash on the service's path survives only when something follows the
    prefix or the request ends with a slash.

    Service C{/service}, route C{/route}, C{strip_path}: C{/route/x} goes
    to C{/service/x}, C{/routereq} to C{/service/req}, C{/route} to
    C{/service} and C{/route/} to C{/service/}. Without C{strip_path},
    C{/route} goes to C{/service/route}. The full table is in
    C{docs/routing.md}.

    @param service_path: the service's C{path}; C{None} means C{/}.
    @param request_path: the normalised request path
        (see L{normalize_path}).
    @param stripped: what the route's path matched at the start of
        C{request_path}: the prefix, or a regex path's whole match; C{""}
        when the route matched without a path.
    @param strip_path: the route's C{strip_path}.
    @raise ValueError: if C{request_path} does not start with C{stripped}.
    """
    if not request_path.startswith(stripped):
        raise ValueError(
            f"the request path {request_path!r} does not start with {stripped!r}"
        )
    base = service_path or "/"
    if stripped:
        postfix = _sanitize_postfix(request_path[len(stripped):])
    else:
        postfix = request_path[1:]

    if base.endswith("/"):
        if not strip_path:
            return base + request_path[1:]
        if postfix == "":
            if base == "/" or request_path.endswith("/"):
                return base
            return base[:-1]
        if postfix.startswith("/"):
            return base[:-1] + postfix
        return base + postfix

    if not strip_path:
        if request_path == "/":
            return base
        return base + request_path
    if postfix == "":
        if len(request_path) > 1 and request_path.endswith("/"):
            return base + "/"
        return base
    if postfix.startswith("/"):
        return base + postfix
    return base + "/" + postfix


def python_regex(pcre: str) -> str:
    """
    Translate the PCRE syntax that Kong users write to Python's: named
    groups C{(?<name>...)} become C{(?P<name>...)}. Everything else is
    left alone (lookbehinds, escapes and character classes included).
    """
    out: list[str] = []
    i, n, in_class = 0, len(pcre), False
    while i < n:
        char = pcre[i]
        if char == "\\":
            out.append(pcre[i:i + 2])
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            out.append(char)
            i = _class_start(pcre, i + 1, out)
            in_class = True
            continue
        elif pcre.startswith("(?<", i) and (pcre[i + 3:i + 4].isalpha() or pcre[i + 3:i + 4] == "_"):
            out.append("(?P<")
            i += 3
            continue
        out.append(char)
        i += 1
    return "".join(out)


def _class_start(pattern: str, i: int, out: list[str] | None = None) -> int:
    """
    Skip a character class's leading C{^} and C{]} (a literal there).
    """
    for literal in "^]":
        if pattern[i:i + 1] == literal:
            if out is not None:
                out.append(literal)
            i += 1
    return i


def compile_regex(source: str, *, ignore_case: bool = False) -> regex.Pattern[str]:
    """
    Compile a regex in Kong's PCRE syntax (see L{python_regex}) with the
    C{regex} package, whose matches take a time budget
    (C{pattern.match(path, timeout=seconds)} raises L{TimeoutError} when
    it runs out), unlike C{re}'s, which nothing can interrupt.

    The syntax accepted is C{re}'s, checked by compiling with C{re} first,
    so that a route the Admin API refused before is refused still, with
    the same message; C{regex}'s own extensions (C{\\p{L}}, flags in
    mid-pattern, variable-length lookbehinds) are not accepted. Patterns
    match as with C{re} (C{regex}'s C{VERSION0} is C{re}'s behaviour),
    except that PCRE's POSIX classes (C{[[:digit:]]}) mean what they mean
    for Kong rather than a set of the characters C{[:digt}.

    @param ignore_case: match ignoring case (as C{re.IGNORECASE}).
    @raise ValueError: if the regex does not compile; its C{__cause__} is
        the compiler's error.
    """
    python = python_regex(source)
    try:
        re.compile(python, re.IGNORECASE if ignore_case else 0)
        return regex.compile(python, regex.VERSION0 | (regex.IGNORECASE if ignore_case else 0))
    except (re.error, regex.error) as e:
        raise ValueError(f"invalid regex {source!r}: {e}") from e


def compile_regex_path(path: str) -> regex.Pattern[str]:
    """
    Compile a route's regex path (C{~} then a regex in Kong's PCRE syntax,
    see L{compile_regex}) for matching at the start of a normalised path
    with C{pattern.match(path, timeout=seconds)}. The leading C{~} is
    optional here.

    @raise ValueError: if the regex does not compile.
    """
    return compile_regex(path[1:] if path.startswith("~") else path)


def regex_literal_prefix(pattern: str) -> str:
    """
    A literal prefix that every match of the Python regex C{pattern},
    anchored at the start, begins with (C{"/users/"} for
    C{"/users/\\d+"}); C{""} when none can be told cheaply, e.g. when
    the pattern has a top-level C{|}. The router files regex routes under
    it.
    """
    depth, i, n, in_class = 0, 0, len(pattern), False
    while i < n:
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            i = _class_start(pattern, i + 1)
            in_class = True
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            return ""
        i += 1

    chars: list[str] = []
    i = 1 if pattern.startswith("^") else 0
    while i < n:
        char = pattern[i]
        if char == "\\":
            literal = pattern[i + 1:i + 2]
            if literal == "" or literal.isalnum() or literal.isspace():
                break
            step = 2
        elif char in ".^$*+?{}[]()|":
            break
        else:
            literal, step = char, 1
        if pattern[i + step:i + step + 1] in ("*", "+", "?", "{"):
            break
        chars.append(literal)
        i += step
    return "".join(chars)
