"""
echogate's tests. Importing L{echogate} first gives every test module the
driver under the name C{psycopg2} (C{psycopg2cffi} on PyPy).
"""
import echogate  # noqa: F401
