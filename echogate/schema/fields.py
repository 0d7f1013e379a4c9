"""
The base of the schema language (L{echogate.schema}) and its field types
for single values.

L{Field} holds what every field type shares (C{required}, C{default},
C{description}, C{check}) and the steps that validate a value; the
single-value types are defined on it here: L{String}, L{Integer},
L{Number}, L{Boolean} and L{Foreign} (a reference to another entity). The
types that hold other values are in L{echogate.schema.containers}, the record and
its checks in L{echogate.schema}, which re-exports them all for plugins.

A field raises L{Invalid} for a bad value; L{echogate.schema.Record.validate}
gathers those into one L{echogate.errors.SchemaViolation}.
"""
from __future__ import annotations

import copy
import math
import re
from typing import Any, Callable, ClassVar, Iterable, Mapping

import attrs

__all__ = [
    "NO_DEFAULT",
    "Field",
    "String",
    "Integer",
    "Number",
    "Boolean",
    "Foreign",
]

# Kong's messages (kong/db/schema/init.lua).
REQUIRED = "required field missing"
UNKNOWN = "unknown field"
UUID = "expected a valid UUID"
MISSING_PK = "missing primary key"

_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z", re.I)

# What no stored text can hold: a NUL (PostgreSQL's text and jsonb refuse
# it) or a lone surrogate (not UTF-8, so it cannot even be sent).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class _NoDefault:
    """
    The type of L{NO_DEFAULT}.
    """

    def __repr__(self) -> str:
        return "NO_DEFAULT"

    def __copy__(self) -> "_NoDefault":
        return self

    def __deepcopy__(self, memo: Any) -> "_NoDefault":
        return self


#: The C{default} of a field that has none.
#:
#: @since: 0.1.0
NO_DEFAULT: Any = _NoDefault()


class Invalid(Exception):
    """
    A value failed validation.

    @ivar error: the message, or a dict of messages for a nested value.

    @since: 0.1.0
    """

    def __init__(self, error: str | dict[str, Any]):
        super().__init__(error)
        self.error = error


def is_uuid(value: Any) -> bool:
    """
    Whether C{value} is a string shaped like a UUID (any case).
    """
    return isinstance(value, str) and bool(_UUID_RE.match(value))


def text_problem(value: str) -> str | None:
    """
    Why C{value} cannot be stored as text, or C{None} when it can: it
    holds a NUL character, or a lone surrogate (which is not UTF-8; Kong's
    message for invalid UTF-8). Positions are 1-based.
    """
    bad = _UNSTORABLE.search(value)
    if bad is None:
        return None
    if bad.group() == "\x00":
        return f"invalid value: NUL character at position {bad.start() + 1}"
    return f"invalid utf-8 character sequence detected at position {bad.start() + 1}"


def _number_text(n: float) -> str:
    if isinstance(n, float) and n.is_integer():
        return str(int(n))
    return str(n)


def _json_ready(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _json_ready(v) for k, v in value.items()}
    return value


def _optional_tuple(value: Iterable[Any] | None) -> tuple[Any, ...] | None:
    return None if value is None else tuple(value)


@attrs.frozen
class Field:
    """
    What every field type shares.

    @ivar required: C{None} (or absence without a default) is an error.
    @ivar default: the value an absent field takes (L{NO_DEFAULT}: none).
    @ivar description: a human description, shown by
        L{echogate.schema.Record.describe}.
    @ivar check: a callable C{value -> message or None} run after the
        built-in checks, for rules they cannot express.

    @since: 0.1.0
    """

    required: bool = attrs.field(default=False, kw_only=True)
    default: Any = attrs.field(default=NO_DEFAULT, kw_only=True)
    description: str = attrs.field(default="", kw_only=True)
    check: Callable[[Any], str | None] | None = attrs.field(default=None, kw_only=True)

    type_name: ClassVar[str] = "any"

    def __attrs_post_init__(self) -> None:
        if self.default is not NO_DEFAULT and self.default is not None:
            try:
                self.coerce(copy.deepcopy(self.default))
            except Invalid as e:
                raise ValueError(f"invalid default {self.default!r}: {e.error}") from None

    def coerce(self, value: Any, partial: bool = False) -> Any:
        """
        Return the validated (and normalised) C{value}, or raise L{Invalid}.

        @param partial: for records, validate only the given fields and
            fill nothing.
        """
        if value is None:
            if self.required:
                raise Invalid(REQUIRED)
            return None
        value = self._typed(value, partial)
        self._constrain(value)
        if self.check is not None:
            message = self.check(value)
            if message:
                raise Invalid(message)
        return value

    def fill(self) -> Any:
        """
        The value of this field when it is absent, or raise L{Invalid}.
        """
        if self.default is NO_DEFAULT:
            if self.required:
                raise Invalid(REQUIRED)
            return None
        if self.default is None:
            return None
        return self.coerce(copy.deepcopy(self.default))

    def _typed(self, value: Any, partial: bool) -> Any:
        return value

    def _constrain(self, value: Any) -> None:
        pass

    def to_json(self) -> dict[str, Any]:
        """
        This field's definition as JSON, in the style of Kong's
        C{/schemas} endpoints.
        """
        out: dict[str, Any] = {"type": self.type_name, "required": self.required}
        if self.default is not NO_DEFAULT:
            out["default"] = _json_ready(self.default)
        if self.description:
            out["description"] = self.description
        out.update(self._extra_json())
        return out

    def _extra_json(self) -> dict[str, Any]:
        return {}


def check_length(value: Any, len_min: int | None, len_max: int | None) -> None:
    """
    Raise L{Invalid} unless C{len(value)} is within C{len_min} and C{len_max}
    (C{None}: no bound).
    """
    if len_min is not None and len(value) < len_min:
        raise Invalid(f"length must be at least {len_min}")
    if len_max is not None and len(value) > len_max:
        raise Invalid(f"length must be at most {len_max}")


def _check_one_of(value: Any, one_of: tuple[Any, ...] | None) -> None:
    if one_of is not None and value not in one_of:
        raise Invalid("expected one of: " + ", ".join(str(o) for o in one_of))


@attrs.frozen
class String(Field):
    """
    A string; empty strings are refused unless C{len_min=0}, and so is a
    string that no database can store (see L{text_problem}): one holding a
    NUL character or a lone surrogate.

    @ivar one_of: the allowed values.
    @ivar starts_with: a required prefix.
    @ivar match: a regular expression the value must contain a match for
        (anchor it with C{^...$} to match the whole value).
    @ivar len_min: the minimum length (default 1).
    @ivar len_max: the maximum length.

    @since: 0.1.0
    """

    one_of: tuple[str, ...] | None = attrs.field(
        default=None, kw_only=True, converter=_optional_tuple
    )
    starts_with: str | None = attrs.field(default=None, kw_only=True)
    match: str | None = attrs.field(default=None, kw_only=True)
    len_min: int | None = attrs.field(default=None, kw_only=True)
    len_max: int | None = attrs.field(default=None, kw_only=True)

    type_name = "string"

    def _typed(self, value: Any, partial: bool) -> Any:
        if not isinstance(value, str):
            raise Invalid("expected a string")
        problem = text_problem(value)
        if problem is not None:
            raise Invalid(problem)
        return value

    def _constrain(self, value: str) -> None:
        _check_one_of(value, self.one_of)
        check_length(value, 1 if self.len_min is None else self.len_min, self.len_max)
        if self.starts_with is not None and not value.startswith(self.starts_with):
            raise Invalid(f"should start with: {self.starts_with}")
        if self.match is not None and re.search(self.match, value) is None:
            raise Invalid(f"invalid value: {value}")

    def _extra_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.one_of is not None:
            out["one_of"] = list(self.one_of)
        for name in ("starts_with", "match", "len_min", "len_max"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


@attrs.frozen
class _NumberField(Field):
    """
    What L{Integer} and L{Number} share.

    @ivar between: inclusive C{(low, high)} bounds.
    @ivar one_of: the allowed values.
    """

    between: tuple[float, float] | None = attrs.field(
        default=None, kw_only=True, converter=_optional_tuple
    )
    one_of: tuple[float, ...] | None = attrs.field(
        default=None, kw_only=True, converter=_optional_tuple
    )

    def _constrain(self, value: float) -> None:
        _check_one_of(value, self.one_of)
        if self.between is not None:
            low, high = self.between
            if not low <= value <= high:
                raise Invalid(
                    f"value should be between {_number_text(low)} and {_number_text(high)}"
                )

    def _extra_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.between is not None:
            out["between"] = list(self.between)
        if self.one_of is not None:
            out["one_of"] = list(self.one_of)
        return out


@attrs.frozen
class Integer(_NumberField):
    """
    An integer (not a boolean); an integral float such as C{80.0} is
    accepted and returned as C{80}.

    @since: 0.1.0
    """

    type_name = "integer"

    def _typed(self, value: Any, partial: bool) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Invalid("expected an integer")
        if isinstance(value, float):
            if not value.is_integer():
                raise Invalid("expected an integer")
            return int(value)
        return value


@attrs.frozen
class Number(_NumberField):
    """
    A finite number, integer or not (not a boolean).

    @since: 0.1.0
    """

    type_name = "number"

    def _typed(self, value: Any, partial: bool) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Invalid("expected a number")
        if isinstance(value, float) and not math.isfinite(value):
            raise Invalid("expected a number")
        return value


@attrs.frozen
class Boolean(Field):
    """
    C{True} or C{False}.

    @since: 0.1.0
    """

    type_name = "boolean"

    def _typed(self, value: Any, partial: bool) -> Any:
        if not isinstance(value, bool):
            raise Invalid("expected a boolean")
        return value


@attrs.frozen
class Foreign(Field):
    """
    A reference to another entity: C{{"id": "<uuid>"}} or null. Other keys
    are ignored (so a whole entity may be given); the id is lower-cased.

    @ivar entity: the referenced collection, e.g. C{"services"}.

    @since: 0.1.0
    """

    entity: str

    type_name = "foreign"

    def _typed(self, value: Any, partial: bool) -> Any:
        if not isinstance(value, Mapping):
            raise Invalid("expected a record")
        if "id" not in value:
            raise Invalid({"id": MISSING_PK})
        key = value["id"]
        if key is None:
            raise Invalid({"id": REQUIRED})
        if not isinstance(key, str):
            raise Invalid({"id": "expected a string"})
        if not is_uuid(key):
            raise Invalid({"id": UUID})
        return {"id": key.lower()}

    def _extra_json(self) -> dict[str, Any]:
        return {"reference": self.entity}
