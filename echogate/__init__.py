"""
echogate: an API gateway in the spirit of Kong, on Twisted.
"""
import platform as _platform

from echogate._version import __version__

if _platform.python_implementation() == "PyPy":
    # PyPy cannot load psycopg2; psycopg2cffi stands in for it under its
    # name, for txpostgres and for echogate (see echogate.store.pgdriver).
    try:
        from psycopg2cffi import compat as _compat
    except ImportError:
        pass
    else:
        _compat.register()

__all__ = ["__version__"]
