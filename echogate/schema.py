"""
A small declarative schema language for entities and plugin configs.

A schema is a tree of immutable field values::

    from echogate.schema import Record, String, Integer, Set

    config_schema = Record({
        "requestHeader": String(default="X-Request-Echo", required=True),
        "limit": Integer(between=(1, 1000), default=10),
        "methods": Set(String(one_of=("GET", "POST"))),
        "redis": Record({
            "host": String(),
            "port": Integer(between=(0, 65535), default=6379),
        }),
    })

    config = config_schema.validate({"limit": 5})

L{Record.validate} returns a new dict in which every declared field is
present (defaults filled, nested records filled recursively, C{None} where
there is no default), or raises L{echogate.errors.SchemaViolation} listing
every bad field at once, with Kong's messages.

Rules worth knowing:

  - C{None} (JSON null) for a required field is C{"required field
    missing"}; for an optional field it stays C{None}.
  - Strings must be non-empty unless C{len_min=0} is given (as in Kong).
  - Booleans are not integers; an integral float (C{80.0}) is an integer.
  - A nested L{Record} that is absent is built from its own defaults; give
    it C{default=None} to make it null when absent instead.
  - Errors inside an L{Array}, L{Set} or L{Map} nest under the field: for
    arrays and sets, a dict keyed by the 1-based index of each bad element
    (C{{"hosts": {"2": "invalid hostname: a b"}}}, read C{hosts.2: ...}
    like Kong's message); for maps, the first bad key or value's message.
  - Entity-level messages (from C{checks}) are listed under C{"@entity"},
    as Kong does.
"""
from __future__ import annotations

import copy
import math
import re
import types
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence

import attrs

from echogate.errors import SchemaViolation

__all__ = [
    "NO_DEFAULT",
    "Field",
    "String",
    "Integer",
    "Number",
    "Boolean",
    "Array",
    "Set",
    "Map",
    "Record",
    "Foreign",
    "at_least_one_of",
    "only_one_of",
    "ENTITY",
]

# Kong's messages (kong/db/schema/init.lua).
REQUIRED = "required field missing"
UNKNOWN = "unknown field"
UUID = "expected a valid UUID"
MISSING_PK = "missing primary key"

#: The key under which entity-level (not field) errors are listed.
ENTITY = "@entity"

_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


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
NO_DEFAULT: Any = _NoDefault()


class Invalid(Exception):
    """
    A value failed validation.

    @ivar error: the message, or a dict of messages for a nested value.
    """

    def __init__(self, error: str | dict[str, Any]):
        super().__init__(error)
        self.error = error


def is_uuid(value: Any) -> bool:
    """
    Whether C{value} is a string shaped like a UUID (any case).
    """
    return isinstance(value, str) and bool(_UUID_RE.match(value))


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
    @ivar description: a human description, shown by L{Record.describe}.
    @ivar check: a callable C{value -> message or None} run after the
        built-in checks, for rules they cannot express.
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


def _check_length(value: Any, len_min: int | None, len_max: int | None) -> None:
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
    A string; empty strings are refused unless C{len_min=0}.

    @ivar one_of: the allowed values.
    @ivar starts_with: a required prefix.
    @ivar match: a regular expression the value must contain a match for
        (anchor it with C{^...$} to match the whole value).
    @ivar len_min: the minimum length (default 1).
    @ivar len_max: the maximum length.
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
        return value

    def _constrain(self, value: str) -> None:
        _check_one_of(value, self.one_of)
        _check_length(value, 1 if self.len_min is None else self.len_min, self.len_max)
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
    """

    type_name = "boolean"

    def _typed(self, value: Any, partial: bool) -> Any:
        if not isinstance(value, bool):
            raise Invalid("expected a boolean")
        return value


def _validate_elements(elements: Field, values: Sequence[Any]) -> list[Any]:
    out = []
    errors: dict[str, Any] = {}
    for index, item in enumerate(values, 1):
        if item is None:
            errors[str(index)] = REQUIRED
            continue
        try:
            out.append(elements.coerce(item))
        except Invalid as e:
            errors[str(index)] = e.error
    if errors:
        raise Invalid(errors)
    return out


@attrs.frozen
class Array(Field):
    """
    A list whose elements all satisfy C{elements} (null elements are
    refused). Errors are reported per 1-based index.

    @ivar elements: the field every element must satisfy.
    @ivar len_min: the minimum number of elements.
    @ivar len_max: the maximum number of elements.
    """

    elements: Field
    len_min: int | None = attrs.field(default=None, kw_only=True)
    len_max: int | None = attrs.field(default=None, kw_only=True)

    type_name = "array"

    def _typed(self, value: Any, partial: bool) -> Any:
        if not isinstance(value, (list, tuple)):
            raise Invalid(f"expected {'a set' if self.type_name == 'set' else 'an array'}")
        return _validate_elements(self.elements, value)

    def _constrain(self, value: list[Any]) -> None:
        _check_length(value, self.len_min, self.len_max)

    def _extra_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"elements": {**self.elements.to_json(), "required": True}}
        for name in ("len_min", "len_max"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


@attrs.frozen
class Set(Array):
    """
    Like L{Array}, with duplicates removed (the first of each is kept).
    """

    type_name = "set"

    def _typed(self, value: Any, partial: bool) -> Any:
        unique: list[Any] = []
        for item in super()._typed(value, partial):
            if item not in unique:
                unique.append(item)
        return unique


@attrs.frozen
class Map(Field):
    """
    A dict whose keys satisfy C{keys} and values satisfy C{values}. The
    first bad key or value is reported, as in Kong.

    @ivar keys: the field every key must satisfy.
    @ivar values: the field every value must satisfy.
    @ivar len_min: the minimum number of entries.
    @ivar len_max: the maximum number of entries.
    """

    keys: Field
    values: Field
    len_min: int | None = attrs.field(default=None, kw_only=True)
    len_max: int | None = attrs.field(default=None, kw_only=True)

    type_name = "map"

    def _typed(self, value: Any, partial: bool) -> Any:
        if not isinstance(value, Mapping):
            raise Invalid("expected a map")
        out = {}
        for k, v in value.items():
            key = self.keys.coerce(k) if k is not None else None
            if key is None or v is None:
                raise Invalid(REQUIRED)
            try:
                out[key] = self.values.coerce(v)
            except Invalid as e:
                raise Invalid(e.error if isinstance(e.error, str) else {str(k): e.error})
        return out

    def _constrain(self, value: dict[Any, Any]) -> None:
        _check_length(value, self.len_min, self.len_max)

    def _extra_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"keys": self.keys.to_json(), "values": self.values.to_json()}
        for name in ("len_min", "len_max"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


@attrs.frozen
class Foreign(Field):
    """
    A reference to another entity: C{{"id": "<uuid>"}} or null. Other keys
    are ignored (so a whole entity may be given); the id is lower-cased.

    @ivar entity: the referenced collection, e.g. C{"services"}.
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


def _read_only(fields: Mapping[str, Field]) -> Mapping[str, Field]:
    for name, field in fields.items():
        if not isinstance(field, Field):
            raise TypeError(f"field {name!r} is {field!r}, not an echogate.schema field")
    return types.MappingProxyType(dict(fields))


Check = Callable[[dict[str, Any]], "Mapping[str, str] | str | None"]


@attrs.frozen
class Record(Field):
    """
    A dict with declared fields, in order.

    @ivar fields: field name to L{Field}, in the order they are shown.
    @ivar checks: entity-level rules, run once every field is valid: each
        is a callable C{record -> {field: message}} (or a message, or
        C{None} when the record is fine). Messages for C{"@entity"} (or
        plain messages) are listed under C{"@entity"}.
    """

    fields: Mapping[str, Field] = attrs.field(converter=_read_only)
    checks: tuple[Check, ...] = attrs.field(default=(), kw_only=True, converter=tuple)

    type_name = "record"

    def validate(self, value: Any, *, partial: bool = False) -> dict[str, Any]:
        """
        Validate C{value} against this record.

        @param partial: validate only the fields given and fill nothing
            (nor run C{checks}): for checking a PATCH body.
        @return: a new dict with every declared field present (unless
            C{partial}), defaults filled, values normalised.
        @raise SchemaViolation: listing every bad field.
        """
        try:
            return self._typed(value, partial)
        except Invalid as e:
            fields = e.error if isinstance(e.error, dict) else {ENTITY: [e.error]}
            raise SchemaViolation(fields) from None

    def _typed(self, value: Any, partial: bool) -> Any:
        if not isinstance(value, Mapping):
            raise Invalid("expected a record")
        errors: dict[str, Any] = {}
        out: dict[str, Any] = {}
        for name, field in self.fields.items():
            try:
                if name in value:
                    out[name] = field.coerce(value[name], partial)
                elif not partial:
                    out[name] = field.fill()
            except Invalid as e:
                errors[name] = e.error
        for key in value:
            if key not in self.fields:
                errors[str(key)] = UNKNOWN
        if not errors and not partial:
            for rule in self.checks:
                _add_check_errors(errors, rule(out))
        if errors:
            raise Invalid(errors)
        return out

    def fill(self) -> Any:
        """
        An absent record is built from its fields' defaults, unless its
        C{default} says otherwise.
        """
        if self.default is NO_DEFAULT:
            return self.coerce({})
        return super().fill()

    def merge(self, existing: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
        """
        Apply a PATCH: C{patch}'s fields replace C{existing}'s, except that
        nested records merge recursively. Arrays, sets and maps are
        replaced whole. Nothing is validated.
        """
        out = dict(existing)
        for key, value in patch.items():
            field = self.fields.get(key)
            old = existing.get(key)
            if isinstance(field, Record) and isinstance(value, Mapping) and isinstance(old, Mapping):
                out[key] = field.merge(old, value)
            else:
                out[key] = value
        return out

    def with_field(self, name: str, field: Field) -> "Record":
        """
        A copy of this record with C{name} replaced by (or extended with)
        C{field}.
        """
        return attrs.evolve(self, fields={**self.fields, name: field})

    def without(self, *names: str) -> "Record":
        """
        A copy of this record without the named fields.
        """
        return attrs.evolve(
            self, fields={k: v for k, v in self.fields.items() if k not in names}
        )

    def describe(self) -> dict[str, Any]:
        """
        This record as JSON in the style of Kong's C{/schemas/...}:
        C{{"fields": [{"name": {"type": ..., "required": ...}}, ...]}}.
        """
        return {"fields": [{name: field.to_json()} for name, field in self.fields.items()]}

    def _extra_json(self) -> dict[str, Any]:
        return self.describe()


def _add_check_errors(errors: dict[str, Any], result: Mapping[str, str] | str | None) -> None:
    if not result:
        return
    if isinstance(result, str):
        result = {ENTITY: result}
    for key, message in result.items():
        if key == ENTITY:
            errors.setdefault(ENTITY, []).append(message)
        else:
            errors[key] = message


def _non_empty(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value != {}


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def at_least_one_of(*names: str) -> Check:
    """
    A L{Record} check: at least one of the named fields is non-empty
    (Kong's C{at_least_one_of}).
    """

    def check(record: dict[str, Any]) -> Mapping[str, str] | None:
        if any(_non_empty(record.get(n)) for n in names):
            return None
        return {ENTITY: f"at least one of these fields must be non-empty: {_quoted(names)}"}

    return check


def only_one_of(*names: str) -> Check:
    """
    A L{Record} check: exactly one of the named fields is non-empty
    (Kong's C{only_one_of}).
    """

    def check(record: dict[str, Any]) -> Mapping[str, str] | None:
        if sum(_non_empty(record.get(n)) for n in names) == 1:
            return None
        return {ENTITY: f"exactly one of these fields must be non-empty: {_quoted(names)}"}

    return check
