"""
The record of the schema language (L{echogate.schema}): a tree of fields
with cross-field checks, for entities and plugin configs.

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

This module defines L{Record} and its checks (L{at_least_one_of},
L{only_one_of}); the other field types are defined in L{echogate.schema.fields}
(L{echogate.schema.fields.Field}, what they all share, and the single-value
types) and L{echogate.schema.containers} (L{Array}, L{Set}, L{Map}), and are
re-exported here, so that plugins import all of them from
C{echogate.schema}.

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
    like Kong's message; an L{echogate.schema.containers.ElementErrors},
    which the Admin API answers as Kong's array, C{[null, "..."]}); for
    maps, the first bad key or value's message.
  - No string may hold a NUL character or a lone surrogate (no database
    can store them): C{"invalid value: NUL character at position N"}.
  - Entity-level messages (from C{checks}) are listed under C{"@entity"},
    as Kong does.
"""
from __future__ import annotations

import types
from typing import Any, Callable, Iterable, Mapping, Sequence

import attrs

from echogate.errors import SchemaViolation
from echogate.schema.fields import NO_DEFAULT, UNKNOWN, Field, Invalid

#: The key under which entity-level (not field) errors are listed.
#:
#: @since: 0.1.0
ENTITY = "@entity"


def _read_only(fields: Mapping[str, Field]) -> Mapping[str, Field]:
    for name, field in fields.items():
        if not isinstance(field, Field):
            raise TypeError(f"field {name!r} is {field!r}, not an echogate.schema field")
    return types.MappingProxyType(dict(fields))


#: A record check (what L{Record}'s C{checks} holds): called with the
#: record, it returns C{{field: message}}, a message, or C{None} when the
#: record is fine.
#:
#: @since: 0.1.0
Check = Callable[[dict[str, Any]], "Mapping[str, str] | str | None"]


def _checks(rules: Iterable[Check]) -> tuple[Check, ...]:
    return tuple(rules)


@attrs.frozen
class Record(Field):
    """
    A dict with declared fields, in order.

    @ivar fields: field name to L{Field}, in the order they are shown.
    @ivar checks: entity-level rules, run once every field is valid: each
        is a callable C{record -> {field: message}} (or a message, or
        C{None} when the record is fine). Messages for C{"@entity"} (or
        plain messages) are listed under C{"@entity"}.

    @since: 0.1.0
    """

    fields: Mapping[str, Field] = attrs.field(converter=_read_only)
    checks: tuple[Check, ...] = attrs.field(default=(), kw_only=True, converter=_checks)

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

    def _typed(self, value: Any, partial: bool) -> dict[str, Any]:
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

    @since: 0.1.0
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

    @since: 0.1.0
    """

    def check(record: dict[str, Any]) -> Mapping[str, str] | None:
        if sum(_non_empty(record.get(n)) for n in names) == 1:
            return None
        return {ENTITY: f"exactly one of these fields must be non-empty: {_quoted(names)}"}

    return check
