"""
The schema language plugin configs and echogate's own entities are
written in (public API: plugin authors import from here).

The single-value field types are in L{echogate.schema.fields}, the
containers in L{echogate.schema.containers}, the record and its
cross-field checks in L{echogate.schema.record}; this package names them
all in one place, as C{echogate.schema} always has::

    from echogate.schema import Record, String, Integer, Set

@since: 0.1.0
"""
from echogate.schema.containers import Array, Map, Set
from echogate.schema.fields import NO_DEFAULT, Boolean, Field, Foreign, Integer, Invalid, Number, String
from echogate.schema.record import ENTITY, Check, Record, at_least_one_of, only_one_of

__all__ = [
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
    "Field",
    "Invalid",
    "NO_DEFAULT",
    "Check",
]
