"""
The C{echogate} command: operator tasks that run outside the gateway.

    echogate migrations bootstrap|up|status|reset [--yes] --database DSN

C{--database} defaults to C{$ECHOGATE_DATABASE}. Operator mistakes (no
or bad DSN, unreachable server, C{reset} without C{--yes}) print one line
on standard error, never a traceback. Exit codes: 0 done, 1 the database
failed us (unreachable, a migration failed), 2 the command line is wrong.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

import psycopg2

from echogate._version import __version__
from echogate.store import migrations

_ENV = "ECHOGATE_DATABASE"

USAGE_ERROR = 2
DATABASE_ERROR = 1


class _Refused(Exception):
    """
    The command line asks for something we will not do.
    """


def _describe(migration: migrations.Migration) -> str:
    return f"{migration.version} ({migration.name})"


def _bootstrap(dsn: str) -> None:
    applied, pending = migrations.read_status(dsn)
    if applied:
        print("Database already bootstrapped")
        if pending:
            print(f"{len(pending)} migration(s) pending; run: echogate migrations up")
        return
    done = migrations.migrate(dsn)
    for migration in done:
        print(f"Applied migration {_describe(migration)}")
    print("Database bootstrapped")


def _up(dsn: str) -> None:
    done = migrations.migrate(dsn)
    for migration in done:
        print(f"Applied migration {_describe(migration)}")
    if not done:
        print("Database is up to date")


def _status(dsn: str) -> None:
    applied, pending = migrations.read_status(dsn)
    print(f"Database: {migrations.redact(dsn)}")
    print("Applied:")
    for a in applied:
        print(f"  {a.version}  {a.name}  ({a.applied_at:%Y-%m-%d %H:%M:%S %Z})")
    if not applied:
        print("  (none)")
    print("Pending:")
    for migration in pending:
        print(f"  {migration.version}  {migration.name}")
    if not pending:
        print("  (none)")
    if not applied:
        print("Database needs bootstrapping; run: echogate migrations bootstrap")
    elif pending:
        print(f"{len(pending)} migration(s) pending; run: echogate migrations up")
    else:
        print("Database is up to date")


def _reset(dsn: str, yes: bool) -> None:
    if not yes:
        raise _Refused(
            f"reset drops every echogate table in {migrations.redact(dsn)};"
            " add --yes to do it")
    dropped = migrations.drop(dsn)
    if dropped:
        print(f"Dropped {', '.join(dropped)}")
    else:
        print("Nothing to drop")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="echogate", description="echogate operator commands")
    parser.add_argument("--version", action="version", version=f"echogate {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    group = commands.add_parser("migrations", help="create or upgrade the database schema")
    database = argparse.ArgumentParser(add_help=False)
    database.add_argument(
        "--database", metavar="DSN", default=os.environ.get(_ENV) or None,
        help=f"PostgreSQL DSN, e.g. postgresql://user@host:5432/db (default: ${_ENV})")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("bootstrap", parents=[database],
                       help="create the schema in an empty database")
    actions.add_parser("up", parents=[database], help="apply pending migrations")
    actions.add_parser("status", parents=[database],
                       help="list applied and pending migrations")
    reset = actions.add_parser("reset", parents=[database],
                               help="drop every echogate table (needs --yes)")
    reset.add_argument("--yes", action="store_true", help="really drop everything")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the C{echogate} command; return its exit code.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.database:
        parser.error(f"no database: pass --database DSN or set {_ENV}")
    run: dict[str, Callable[[], None]] = {
        "bootstrap": lambda: _bootstrap(args.database),
        "up": lambda: _up(args.database),
        "status": lambda: _status(args.database),
        "reset": lambda: _reset(args.database, args.yes),
    }
    try:
        run[args.action]()
    except (migrations.BadDSN, _Refused) as e:
        print(f"echogate: {e}", file=sys.stderr)
        return USAGE_ERROR
    except (migrations.Unreachable, migrations.MigrationFailed) as e:
        print(f"echogate: {e}", file=sys.stderr)
        return DATABASE_ERROR
    except psycopg2.Error as e:
        reason = str(e).strip().splitlines()
        print(f"echogate: database error: {reason[0] if reason else type(e).__name__}",
              file=sys.stderr)
        return DATABASE_ERROR
    except KeyboardInterrupt:
        print("echogate: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
