"""
The PostgreSQL driver under every Python echogate runs on.

On CPython it is C{psycopg2}. On PyPy, whose C-API emulation cannot load
C{psycopg2} (it calls interpreter internals PyPy does not have), it is
C{psycopg2cffi}, registered under the name C{psycopg2} so that txpostgres
and echogate import one driver by one name: importing L{echogate} does
that (C{echogate/__init__.py}), before anything imports txpostgres.

What the two drivers do not share is here: L{parse_dsn} (C{psycopg2cffi}
has no C{parse_dsn}: libpq's own parser is called through ctypes),
L{conninfo} (C{psycopg2cffi} takes a DSN or keywords, not both),
L{is_connection_error} (C{psycopg2cffi} reports a closed connection as
a plain C{DatabaseError}) and the SQLSTATE codes of the constraint
violations echogate translates (C{psycopg2cffi} has no C{psycopg2.errors}
classes; both set C{pgcode}).
"""
from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any, Mapping

import psycopg2
import psycopg2.extensions

#: SQLSTATE codes (PostgreSQL's appendix A) of the violations echogate
#: turns into Kong's errors.
UNIQUE_VIOLATION = "23505"
FOREIGN_KEY_VIOLATION = "23503"
RESTRICT_VIOLATION = "23001"
NOT_NULL_VIOLATION = "23502"


def is_connection_error(error: BaseException) -> bool:
    """
    Whether C{error} says the connection failed (lost, refused, closed)
    rather than that a statement did: C{psycopg2}'s C{OperationalError}
    and C{InterfaceError}, and C{psycopg2cffi}'s bare C{DatabaseError}
    without an SQLSTATE, which is what it raises for a connection the
    server closed (statements' errors always carry one).
    """
    if isinstance(error, (psycopg2.OperationalError, psycopg2.InterfaceError)):
        return True
    return type(error) is psycopg2.DatabaseError and getattr(error, "pgcode", None) is None


class _ConninfoOption(ctypes.Structure):
    _fields_ = [("keyword", ctypes.c_char_p), ("envvar", ctypes.c_char_p), ("compiled", ctypes.c_char_p),
                ("val", ctypes.c_char_p), ("label", ctypes.c_char_p), ("dispchar", ctypes.c_char_p),
                ("dispsize", ctypes.c_int)]


def _libpq_parse_dsn(dsn: str) -> dict[str, str]:
    name = ctypes.util.find_library("pq")
    if name is None:
        raise psycopg2.ProgrammingError("libpq is not installed")
    libpq = ctypes.CDLL(name)
    libpq.PQconninfoParse.restype = ctypes.POINTER(_ConninfoOption)
    libpq.PQconninfoParse.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p)]
    libpq.PQconninfoFree.argtypes = [ctypes.POINTER(_ConninfoOption)]
    libpq.PQfreemem.argtypes = [ctypes.c_void_p]
    error = ctypes.c_char_p()
    options = libpq.PQconninfoParse(dsn.encode(), ctypes.byref(error))
    if not options:
        message = error.value.decode(errors="replace").strip() if error.value else "invalid dsn"
        if error.value:
            libpq.PQfreemem(ctypes.cast(error, ctypes.c_void_p))
        raise psycopg2.ProgrammingError(message)
    try:
        parsed = {}
        index = 0
        while options[index].keyword is not None:
            option = options[index]
            if option.val is not None:
                parsed[option.keyword.decode()] = option.val.decode()
            index += 1
        return parsed
    finally:
        libpq.PQconninfoFree(options)


def conninfo(dsn: str, **params: Any) -> str:
    """
    C{dsn} (a libpq connection string or URI) with C{params} added or
    replaced, as one connection string: C{psycopg2cffi} takes a DSN or
    keywords, not both as C{psycopg2} does.

    @raise psycopg2.ProgrammingError: C{dsn} is not one.
    """
    return as_conninfo({**parse_dsn(dsn), **params})


def as_conninfo(params: Mapping[str, Any]) -> str:
    """
    Connection parameters as one libpq connection string (values quoted).
    """
    return " ".join(f"{key}='{_quoted(str(value))}'" for key, value in params.items())


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def parse_dsn(dsn: str) -> dict[str, Any]:
    """
    The parameters of a libpq connection string or URI.

    @raise psycopg2.ProgrammingError: C{dsn} is not one.
    """
    parse = getattr(psycopg2.extensions, "parse_dsn", None)
    if parse is not None:
        parsed: dict[str, Any] = parse(dsn)
        return parsed
    return _libpq_parse_dsn(dsn)
