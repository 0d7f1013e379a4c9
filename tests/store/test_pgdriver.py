"""
Tests for L{echogate.store.pgdriver}: what echogate needs of its PostgreSQL
driver that C{psycopg2} and C{psycopg2cffi} (PyPy) do not share.
"""
from __future__ import annotations

from unittest import skipIf

import psycopg2
import psycopg2.errorcodes
from twisted.trial.unittest import SynchronousTestCase

from echogate.store import pgdriver

#: DSNs and what libpq makes of them.
_DSNS = {
    "host=127.0.0.1 port=5432 dbname=kong user=kong":
        {"host": "127.0.0.1", "port": "5432", "dbname": "kong", "user": "kong"},
    "dbname='with spaces' password='it\\'s' application_name=node-a":
        {"dbname": "with spaces", "password": "it's", "application_name": "node-a"},
    "postgresql://kong:secret@db.example:6543/kong?sslmode=require&connect_timeout=3":
        {"user": "kong", "password": "secret", "host": "db.example", "port": "6543", "dbname": "kong",
         "sslmode": "require", "connect_timeout": "3"},
    "postgresql:///kong?host=/var/run/postgresql": {"dbname": "kong", "host": "/var/run/postgresql"},
    "": {},
}


class ParseDSNTests(SynchronousTestCase):
    """
    L{pgdriver.parse_dsn}, and libpq's parser through ctypes behind it
    where the driver has none.
    """

    def test_libpq(self) -> None:
        """
        libpq's own parser, called through ctypes, parses key/value strings
        and URIs.
        """
        for dsn, parsed in _DSNS.items():
            self.assertEqual(pgdriver._libpq_parse_dsn(dsn), parsed, dsn)

    @skipIf(not hasattr(psycopg2.extensions, "parse_dsn"), "this driver has no parse_dsn")
    def test_libpqAgreesWithPsycopg2(self) -> None:
        """
        It gives what psycopg2's C{parse_dsn} gives.
        """
        for dsn in _DSNS:
            self.assertEqual(pgdriver._libpq_parse_dsn(dsn), psycopg2.extensions.parse_dsn(dsn), dsn)

    def test_libpqRejectsBadDSN(self) -> None:
        """
        A string libpq cannot parse raises L{psycopg2.ProgrammingError}
        with libpq's message, as psycopg2's C{parse_dsn} does.
        """
        for dsn, message in [
                ("host=x bogus", 'missing "=" after "bogus" in connection info string'),
                ("postgresql://h/db?nosuchoption=1", 'invalid URI query parameter: "nosuchoption"'),
                ("host='unterminated", "unterminated quoted string in connection info string")]:
            with self.assertRaises(psycopg2.ProgrammingError, msg=dsn) as caught:
                pgdriver._libpq_parse_dsn(dsn)
            self.assertEqual(str(caught.exception).strip(), message, dsn)

    def test_parseDSN(self) -> None:
        """
        L{pgdriver.parse_dsn} parses, and raises L{psycopg2.ProgrammingError}.
        """
        self.assertEqual(pgdriver.parse_dsn("host=h port=1"), {"host": "h", "port": "1"})
        self.assertRaises(psycopg2.ProgrammingError, pgdriver.parse_dsn, "host=x bogus")

    def test_parseDSNWithoutDriverParser(self) -> None:
        """
        With a driver that has no C{parse_dsn} (psycopg2cffi), libpq's is used.
        """
        if hasattr(psycopg2.extensions, "parse_dsn"):
            self.patch(psycopg2.extensions, "parse_dsn", None)
            del psycopg2.extensions.parse_dsn
        self.assertEqual(pgdriver.parse_dsn("host=h port=1"), {"host": "h", "port": "1"})


class ConninfoTests(SynchronousTestCase):
    """
    L{pgdriver.conninfo}: one connection string from a DSN and keywords.
    """

    def test_merges(self) -> None:
        """
        Keywords are added, and replace what the DSN says; the result
        parses back to the merged parameters, quotes and backslashes kept.
        """
        for dsn in _DSNS:
            merged = pgdriver.conninfo(dsn, connect_timeout=10, application_name="it's \\ me")
            expected = {**_DSNS[dsn], "connect_timeout": "10", "application_name": "it's \\ me"}
            self.assertEqual(pgdriver.parse_dsn(merged), expected, dsn)

    def test_badDSN(self) -> None:
        """
        A DSN libpq cannot parse raises L{psycopg2.ProgrammingError}.
        """
        self.assertRaises(psycopg2.ProgrammingError, pgdriver.conninfo, "host=x bogus", port=1)


class ConnectionErrorTests(SynchronousTestCase):
    """
    L{pgdriver.is_connection_error} tells a failed connection from a
    failed statement.
    """

    def test_connection(self) -> None:
        """
        C{OperationalError}, C{InterfaceError}, and a bare C{DatabaseError}
        without an SQLSTATE (psycopg2cffi's closed connection) are.
        """
        for error in (psycopg2.OperationalError("server closed the connection unexpectedly"),
                      psycopg2.InterfaceError("connection already closed"),
                      psycopg2.DatabaseError("server closed the connection unexpectedly")):
            self.assertTrue(pgdriver.is_connection_error(error), error)

    def test_statement(self) -> None:
        """
        A statement's errors (which carry an SQLSTATE, or are a subclass
        such as C{IntegrityError}) and other exceptions are not.
        """
        for error in (psycopg2.IntegrityError("duplicate key"), psycopg2.ProgrammingError("syntax"),
                      psycopg2.DataError("bad value"), ValueError("no")):
            self.assertFalse(pgdriver.is_connection_error(error), error)


class SQLStateTests(SynchronousTestCase):
    """
    The SQLSTATE codes echogate matches errors by.
    """

    def test_codes(self) -> None:
        """
        They are PostgreSQL's codes for the four violations.
        """
        self.assertEqual(
            (pgdriver.UNIQUE_VIOLATION, pgdriver.FOREIGN_KEY_VIOLATION, pgdriver.RESTRICT_VIOLATION,
             pgdriver.NOT_NULL_VIOLATION),
            (psycopg2.errorcodes.UNIQUE_VIOLATION, psycopg2.errorcodes.FOREIGN_KEY_VIOLATION,
             psycopg2.errorcodes.RESTRICT_VIOLATION, psycopg2.errorcodes.NOT_NULL_VIOLATION))
