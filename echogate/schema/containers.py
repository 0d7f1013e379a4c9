"""
The schema field types that hold other values: L{Array} and L{Set} (lists
of elements) and L{Map} (keys to values), each checking every element, key
or value against a field of its own (see L{echogate.schema.fields}).

Errors inside them nest under the field, as L{echogate.schema} describes;
L{echogate.schema} re-exports them for plugins.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import attrs

from echogate.schema.fields import REQUIRED, Field, Invalid, check_length

__all__ = [
    "Array",
    "Set",
    "Map",
    "ElementErrors",
]


class ElementErrors(dict[str, Any]):
    """
    The errors of an L{Array}'s or L{Set}'s elements: a dict keyed by the
    1-based index (as a string) of each bad element, so that it compares
    equal to, and reads like, C{{"2": "expected a string"}}. Being its own
    type lets the Admin API answer it in Kong's shape, an array with
    C{null} for each good element (see L{as_list}).
    """

    def as_list(self) -> list[Any] | dict[str, Any]:
        """
        Kong's shape: C{[None, "expected a string"]} for C{{"2": ...}}
        (a plain dict if a key is not an index).
        """
        if not all(isinstance(key, str) and key.isdigit() and int(key) > 0 for key in self):
            return dict(self)
        out: list[Any] = [None] * max((int(key) for key in self), default=0)
        for key, value in self.items():
            out[int(key) - 1] = value
        return out


def _validate_elements(elements: Field, values: Sequence[Any]) -> list[Any]:
    out = []
    errors: dict[str, Any] = ElementErrors()
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

    @since: 0.1.0
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
        check_length(value, self.len_min, self.len_max)

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

    @since: 0.1.0
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

    @since: 0.1.0
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
                raise Invalid(e.error if isinstance(e.error, str) else {str(k): e.error}) from None
        return out

    def _constrain(self, value: dict[Any, Any]) -> None:
        check_length(value, self.len_min, self.len_max)

    def _extra_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"keys": self.keys.to_json(), "values": self.values.to_json()}
        for name in ("len_min", "len_max"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out
