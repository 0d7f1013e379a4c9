"""
Tests for the C{echogate} command (L{echogate.cli}).
"""
from __future__ import annotations

import io
import os
import subprocess
import sys

from twisted.trial.unittest import TestCase

from echogate import cli
from echogate.store import migrations
from echogate.store.migrations import MIGRATIONS, Migration, read_status
from tests.postgres import PostgresMixin, TemporaryServer


class CommandTestCase(PostgresMixin, TestCase):
    """
    Run L{cli.main} with captured output.
    """

    timeout = 60

    def setUp(self) -> None:
        saved = os.environ.pop("ECHOGATE_DATABASE", None)
        if saved is not None:
            self.addCleanup(os.environ.__setitem__, "ECHOGATE_DATABASE", saved)

    def run_cli(self, *argv: str) -> tuple[int, str, str]:
        """
        Run the command; return its exit code, stdout and stderr.
        """
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        try:
            code = cli.main(list(argv))
        except SystemExit as e:
            code = e.code  # type: ignore[assignment]
        finally:
            self.patch(sys, "stdout", sys.__stdout__)
            self.patch(sys, "stderr", sys.__stderr__)
        return code, out.getvalue(), err.getvalue()

    def assertOneLineError(self, err: str, text: str) -> None:
        """
        C{err} is one line, starting with C{echogate:}, containing C{text}.
        """
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.assertTrue(err.startswith("echogate: "), err)
        self.assertIn(text, err)
        self.assertNotIn("Traceback", err)


class BootstrapTests(CommandTestCase):
    """
    C{echogate migrations bootstrap}.
    """

    def test_empty(self) -> None:
        """
        Bootstrapping an empty database applies every migration.
        """
        dsn = self.database(migrated=False)
        code, out, _ = self.run_cli("migrations", "bootstrap", "--database", dsn)
        self.assertEqual(code, 0)
        self.assertIn(f"Applied migration 1 ({MIGRATIONS[0].name})", out)
        self.assertTrue(out.endswith("Database bootstrapped\n"))
        self.assertEqual(read_status(dsn)[1], [])

    def test_again(self) -> None:
        """
        Bootstrapping a bootstrapped database changes nothing and says so.
        """
        code, out, _ = self.run_cli("migrations", "bootstrap", "--database", self.database())
        self.assertEqual((code, out), (0, "Database already bootstrapped\n"))

    def test_pending(self) -> None:
        """
        Bootstrapping a database with pending migrations points at C{up}.
        """
        dsn = self.database()
        self.patch(migrations, "MIGRATIONS",
                   MIGRATIONS + (Migration(len(MIGRATIONS) + 1, "next", "SELECT 1"),))
        code, out, _ = self.run_cli("migrations", "bootstrap", "--database", dsn)
        self.assertEqual(code, 0)
        self.assertIn("1 migration(s) pending; run: echogate migrations up", out)


class UpTests(CommandTestCase):
    """
    C{echogate migrations up}.
    """

    def test_up(self) -> None:
        """
        C{up} applies what is pending, then reports the database current.
        """
        dsn = self.database(migrated=False)
        code, out, _ = self.run_cli("migrations", "up", "--database", dsn)
        self.assertEqual((code, out), (0, "".join(f"Applied migration {m.version} ({m.name})\n"
                                                   for m in MIGRATIONS)))
        code, out, _ = self.run_cli("migrations", "up", "--database", dsn)
        self.assertEqual((code, out), (0, "Database is up to date\n"))

    def test_environment(self) -> None:
        """
        Without C{--database}, C{$ECHOGATE_DATABASE} names the database.
        """
        dsn = self.database(migrated=False)
        os.environ["ECHOGATE_DATABASE"] = dsn
        self.addCleanup(os.environ.pop, "ECHOGATE_DATABASE", None)
        code, _, _ = self.run_cli("migrations", "up")
        self.assertEqual(code, 0)
        self.assertEqual(read_status(dsn)[1], [])

    def test_failed(self) -> None:
        """
        A migration that fails exits 1 with one line naming it.
        """
        self.patch(migrations, "MIGRATIONS",
                   MIGRATIONS + (Migration(len(MIGRATIONS) + 1, "broken", "SELECT nonsense"),))
        code, _, err = self.run_cli("migrations", "up", "--database", self.database())
        self.assertEqual(code, 1)
        self.assertOneLineError(err, f"migration {len(MIGRATIONS) + 1} (broken) failed")


class StatusTests(CommandTestCase):
    """
    C{echogate migrations status}.
    """

    def test_empty(self) -> None:
        """
        An empty database lists everything as pending and needs
        bootstrapping.
        """
        dsn = self.database(migrated=False)
        code, out, _ = self.run_cli("migrations", "status", "--database", dsn)
        self.assertEqual(code, 0)
        self.assertEqual(out, (
            f"Database: {dsn}\nApplied:\n  (none)\nPending:\n"
            + "".join(f"  {m.version}  {m.name}\n" for m in MIGRATIONS)
            + "Database needs bootstrapping; run: echogate migrations bootstrap\n"))

    def test_migrated(self) -> None:
        """
        A migrated database lists what was applied, and nothing pending.
        """
        code, out, _ = self.run_cli("migrations", "status", "--database", self.database())
        self.assertEqual(code, 0)
        self.assertIn(f"Applied:\n  1  {MIGRATIONS[0].name}  (", out)
        self.assertTrue(out.endswith("Pending:\n  (none)\nDatabase is up to date\n"), out)

    def test_pending(self) -> None:
        """
        Pending migrations are listed with the command to apply them.
        """
        dsn = self.database()
        self.patch(migrations, "MIGRATIONS",
                   MIGRATIONS + (Migration(len(MIGRATIONS) + 1, "next", "SELECT 1"),))
        code, out, _ = self.run_cli("migrations", "status", "--database", dsn)
        self.assertEqual(code, 0)
        self.assertIn(f"Pending:\n  {len(MIGRATIONS) + 1}  next\n", out)
        self.assertIn("1 migration(s) pending; run: echogate migrations up", out)


class ResetTests(CommandTestCase):
    """
    C{echogate migrations reset}.
    """

    def test_refused(self) -> None:
        """
        Without C{--yes}, reset refuses (exit 2) and drops nothing.
        """
        dsn = self.database()
        code, out, err = self.run_cli("migrations", "reset", "--database", dsn)
        self.assertEqual((code, out), (2, ""))
        self.assertOneLineError(err, "add --yes")
        self.assertEqual(read_status(dsn)[1], [])

    def test_reset(self) -> None:
        """
        With C{--yes}, reset drops every echogate table; again, nothing.
        """
        dsn = self.database()
        code, out, _ = self.run_cli("migrations", "reset", "--yes", "--database", dsn)
        self.assertEqual(code, 0)
        self.assertTrue(out.startswith("Dropped "), out)
        self.assertIn("schema_migrations", out)
        self.assertEqual(read_status(dsn), ([], list(MIGRATIONS)))
        code, out, _ = self.run_cli("migrations", "reset", "--yes", "--database", dsn)
        self.assertEqual((code, out), (0, "Nothing to drop\n"))


class OperatorErrorTests(CommandTestCase):
    """
    Mistakes get one line and an exit code, never a traceback.
    """

    def test_no_database(self) -> None:
        """
        No C{--database} and no environment variable: exit 2.
        """
        code, _, err = self.run_cli("migrations", "up")
        self.assertEqual(code, 2)
        self.assertIn("no database: pass --database DSN or set ECHOGATE_DATABASE", err)

    def test_bad_dsn(self) -> None:
        """
        A DSN that cannot be parsed: exit 2.
        """
        code, _, err = self.run_cli("migrations", "status", "--database", "host=x port")
        self.assertEqual(code, 2)
        self.assertOneLineError(err, "invalid database DSN 'host=x port'")

    def test_unreachable(self) -> None:
        """
        A server that is not running: exit 1, password hidden.
        """
        server = TemporaryServer()
        self.addCleanup(server.remove)
        dsn = f"postgresql://postgres:hunter2@127.0.0.1:{server.port}/postgres"
        for action in ("bootstrap", "up", "status"):
            code, _, err = self.run_cli("migrations", action, "--database", dsn)
            self.assertEqual(code, 1, f"row action={action!r}")
            self.assertOneLineError(err, "cannot connect to postgresql://postgres:***@127.0.0.1")
            self.assertNotIn("hunter2", err, f"row action={action!r}")

    def test_missing_database(self) -> None:
        """
        A database that does not exist on the server: exit 1.
        """
        dsn = self.database().rsplit("/", 1)[0] + "/no_such_database"
        code, _, err = self.run_cli("migrations", "status", "--database", dsn)
        self.assertEqual(code, 1)
        self.assertOneLineError(err, 'database "no_such_database" does not exist')

    def test_no_command(self) -> None:
        """
        No command, or an unknown action: argparse's usage error, exit 2.
        """
        self.assertEqual(self.run_cli()[0], 2)
        self.assertEqual(self.run_cli("migrations")[0], 2)
        self.assertEqual(self.run_cli("migrations", "sideways", "--database", "x")[0], 2)

    def test_version(self) -> None:
        """
        C{--version} prints the version.
        """
        from echogate import __version__

        code, out, _ = self.run_cli("--version")
        self.assertEqual((code, out), (0, f"echogate {__version__}\n"))


class ConsoleScriptTests(CommandTestCase):
    """
    The installed C{echogate} script runs L{cli.main}.
    """

    def test_script(self) -> None:
        """
        C{echogate migrations status} in a subprocess exits 0 and prints
        the status.
        """
        script = os.path.join(os.path.dirname(sys.executable), "echogate")
        result = subprocess.run([script, "migrations", "status", "--database", self.database()],
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("Database is up to date", result.stdout)
