"""
The C{echogate} command: operator tasks that run outside the gateway.

    echogate migrations bootstrap|up|status|reset [--yes] --database DSN
    echogate config init [FILE]
    echogate config parse FILE
    echogate config db_export FILE|- [--format yaml|json] --database DSN
    echogate config db_import FILE --database DSN
    echogate config diff FILE [--select-tag T ...] [--non-zero-exit-code] --database DSN
    echogate config sync FILE [--select-tag T ...] [--dry-run] --database DSN
    echogate plugin new NAME [--dir DIR]

C{--database} defaults to C{$ECHOGATE_DATABASE}, C{--plugins} (the
plugins whose configs a file may hold) to C{$ECHOGATE_PLUGINS} or
C{bundled}. Operator mistakes (no or bad DSN, unreachable server, C{reset}
without C{--yes}) print one line on standard error, never a traceback; an
invalid file prints each of its errors with its path. Exit codes: 0 done,
1 the database or the file failed us (unreachable, a migration failed, an
invalid file, a write refused), 2 the command line is wrong (and C{diff
--non-zero-exit-code}: there are differences). The C{config} commands
that use the database run the reactor (L{run} is the same, on a running
one); the format and the commands are described in C{docs/declarative.md}.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Callable, Coroutine, Mapping, Sequence

import psycopg2
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.python.failure import Failure

from echogate import declarative
from echogate._version import __version__
from echogate.declarative import sync
from echogate.errors import GatewayError
from echogate.registry import PluginLoadError, discover, is_bundled, load_plugins
from echogate.scaffold import ScaffoldError, write_project
from echogate.store import migrations

_ENV = "ECHOGATE_DATABASE"
_PLUGINS_ENV = "ECHOGATE_PLUGINS"

#: The seconds a C{config} command's database call may take (a sync of
#: thousands of entities is one call).
CONFIG_QUERY_TIMEOUT = 600.0

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
    database.add_argument(
        "--data-dir", metavar="DIR", default=os.environ.get("ECHOGATE_DATA_DIR") or None,
        help="a node's data directory (twistd's --data-dir, ./echogate-data by default there), whose embedded"
             " PostgreSQL server is used when no DSN is given (default: $ECHOGATE_DATA_DIR)")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("bootstrap", parents=[database],
                       help="create the schema in an empty database")
    actions.add_parser("up", parents=[database], help="apply pending migrations")
    actions.add_parser("status", parents=[database],
                       help="list applied and pending migrations")
    reset = actions.add_parser("reset", parents=[database],
                               help="drop every echogate table (needs --yes)")
    reset.add_argument("--yes", action="store_true", help="really drop everything")
    _config_parser(commands, database)
    _plugin_parser(commands)
    return parser


def _plugin_parser(commands: Any) -> None:
    group = commands.add_parser("plugin", help="plugin authors' tasks")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    new = actions.add_parser("new", help="write the project of a new plugin (docs/plugins.md)")
    new.add_argument("name", metavar="NAME", help="the plugin's name, lower case with dashes (my-plugin)")
    new.add_argument("--dir", metavar="DIR", default=None,
                     help="the project directory to create (default: ./NAME); it must not exist")


def _new_plugin(name: str, directory: str | None) -> None:
    """
    C{echogate plugin new}: write the project, refusing names that the
    plugins found on this machine (the bundled ones first) already hold.
    """
    available, _ = discover()
    taken = {other: "a bundled plugin" if is_bundled(plugin) else
             f"an installed plugin ({type(plugin).__module__})" for other, plugin in available.items()}
    target = Path(directory if directory is not None else name)
    project = write_project(name, target, taken)
    print(f"Wrote {target}: plugin {project.name!r}, package {project.module}, drop-in {project.dropin}")
    print(f"Next: cd {target} && PYTHONPATH=. trial tests (its README says how to run, build and publish it)")


def _config_parser(commands: Any, database: argparse.ArgumentParser) -> None:
    group = commands.add_parser("config", help="declarative configuration (kong.yml)")
    plugins = argparse.ArgumentParser(add_help=False)
    plugins.add_argument(
        "--plugins", metavar="NAMES", default=os.environ.get(_PLUGINS_ENV) or "bundled",
        help=f"the enabled plugins: 'bundled', plugin names, or 'off' (default: ${_PLUGINS_ENV} or bundled)")
    given = argparse.ArgumentParser(add_help=False)
    given.add_argument("file", metavar="FILE", help="a declarative configuration file (- for stdin)")
    tags = argparse.ArgumentParser(add_help=False)
    tags.add_argument("--select-tag", metavar="TAG", action="append", default=[], dest="select_tags",
                      help="manage only entities carrying this tag (repeat: all of them)")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    init = actions.add_parser("init", help="write an example kong.yml")
    init.add_argument("file", metavar="FILE", nargs="?", default="kong.yml",
                      help="where to write it (default: kong.yml; - for stdout)")
    actions.add_parser("parse", parents=[given, plugins], help="check a file; print every error")
    export = actions.add_parser("db_export", parents=[database],
                                help="write every entity of the database to FILE")
    export.add_argument("file", metavar="FILE", help="where to write (- for stdout)")
    export.add_argument("--format", choices=declarative.FORMATS, default=None,
                        help="yaml or json (default: json for a .json FILE, else yaml)")
    actions.add_parser("db_import", parents=[given, database, plugins],
                       help="add and update the file's entities (nothing deleted)")
    diff = actions.add_parser("diff", parents=[given, database, plugins, tags],
                              help="what sync would create, update and delete")
    diff.add_argument("--non-zero-exit-code", action="store_true",
                      help="exit 2 when there are differences (decK's flag)")
    sync_command = actions.add_parser("sync", parents=[given, database, plugins, tags],
                                      help="make the database equal to the file, in one transaction")
    sync_command.add_argument("--dry-run", action="store_true", help="print the changes, write nothing")


# -- config: the commands without a database

#: What C{echogate config init} writes.
EXAMPLE = """\
# An echogate declarative configuration, in Kong's format (kong.yml).
# Check it:            echogate config parse kong.yml
# See what it changes: echogate config diff kong.yml --database DSN
# Apply it:            echogate config sync kong.yml --database DSN
# The format: docs/declarative.md.
_format_version: "3.0"

services:
- name: example-service
  url: http://127.0.0.1:8080/api     # where requests are sent
  tags: [example]
  routes:                            # the routes of this service
  - name: example-route
    paths: [/example]                # requests whose path starts so
    tags: [example]
    plugins:                         # plugins of this route only
    - name: rate-limiting
      config: {minute: 60, policy: local}
      tags: [example]
  plugins:                           # plugins of the whole service
  - name: key-auth
    tags: [example]

consumers:
- username: example-user
  tags: [example]
  keyauth_credentials:
  - key: change-me-please            # sent as the apikey header
    tags: [example]

# Load balancing: a service whose host is an upstream's name goes to its targets.
# upstreams:
# - name: backend.internal
#   targets:
#   - target: 10.0.0.1:8080
#   - target: 10.0.0.2:8080
#     weight: 50

# Global plugins (every route):
# plugins:
# - name: correlation-id
"""


def _refuse(message: str) -> None:
    raise _Refused(message)


def _init(path: str) -> None:
    if path == "-":
        sys.stdout.write(EXAMPLE)
        return
    target = Path(path)
    if target.exists():
        _refuse(f"{path} exists; remove it or name another file")
    target.write_text(EXAMPLE, encoding="utf-8")
    print(f"Wrote {path}")


def error_lines(errors: Any, path: str = "") -> list[str]:
    """
    A declarative file's nested errors (L{DeclarativeError.fields
    <echogate.declarative.DeclarativeError>}) as lines
    C{services[0].routes[1].paths[0]: message}.
    """
    if isinstance(errors, Mapping):
        lines: list[str] = []
        for key, value in errors.items():
            if key == "@entity":
                lines += error_lines(value, path)
            else:
                lines += error_lines(value, f"{path}.{key}" if path else str(key))
        return lines
    if isinstance(errors, list):
        out: list[str] = []
        for position, value in enumerate(errors):
            if value is not None:
                out += error_lines(value, f"{path}[{position}]")
        return out
    return [f"{path}: {errors}" if path else str(errors)]


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    return Path(path).read_bytes()


def _load(path: str, plugins: Mapping[str, Any]) -> tuple[declarative.Declarative,
                                                           dict[tuple[str, str], frozenset[str]]]:
    """
    The file at C{path}, loaded, and the fields its load made up (keys and
    secrets it does not give: found by loading it again).
    """
    text = _read(path)
    loaded = declarative.load(text, plugins)
    generated: dict[tuple[str, str], frozenset[str]] = {}
    if loaded.records["keyauth_credentials"] or loaded.records["jwt_secrets"]:
        generated = sync.generated_fields(loaded.records, declarative.load(text, plugins).records)
    return loaded, generated


def _parse(path: str, setting: str) -> None:
    declarative.load(_read(path), load_plugins(setting))
    print("parse successful")


# -- config: the commands on the database


async def _config_database(reactor: Any, args: argparse.Namespace) -> int:
    """
    Run a C{config} command that uses the database; return its exit code.
    """
    from echogate.store.postgres import PostgresStore, check_schema_blocking

    dsn = args.database
    action = args.action
    plugins: Mapping[str, Any] = {}
    loaded: declarative.Declarative | None = None
    generated: dict[tuple[str, str], frozenset[str]] = {}
    if action != "db_export":
        plugins = load_plugins(args.plugins)
        loaded, generated = _load(args.file, plugins)
    check_schema_blocking(dsn)
    store = PostgresStore(reactor, dsn, pool_size=1, query_timeout=CONFIG_QUERY_TIMEOUT)
    await store.start()
    try:
        current = await store.load()
        if action == "db_export":
            _export(current, args.file, args.format)
            return 0
        assert loaded is not None
        tags = args.select_tags if action in ("diff", "sync") else ()
        changes = sync.plan(current, loaded.records, select_tags=tags, delete=action != "db_import",
                            generated=generated)
        for line in changes.lines():
            print(line)
        if action == "diff":
            print(changes.summary())
            return USAGE_ERROR if changes and args.non_zero_exit_code else 0
        if action == "sync" and args.dry_run:
            print(changes.summary() + " (dry run: nothing written)")
            return 0
        try:
            await sync.apply(store, changes)
        except GatewayError as e:
            print(f"echogate: {action} failed, nothing was written: {e}", file=sys.stderr)
            return DATABASE_ERROR
        print(changes.summary())
        return 0
    finally:
        await store.stop()


def _export(current: Any, path: str, format: str | None) -> None:
    if format is None:
        format = "json" if path.endswith(".json") else "yaml"
    text = declarative.export(current, format=format)
    if path == "-":
        sys.stdout.write(text)
        return
    Path(path).write_text(text, encoding="utf-8")
    count = sum(len(getattr(current, entity)) for entity in declarative.ENTITY_ORDER)
    print(f"Exported {count} entities to {path}")


def _react(work: Callable[[Any], Coroutine[Any, Any, int]]) -> int:
    """
    Run the reactor until C{work(reactor)} is done; return its result.
    """
    from twisted.internet import reactor

    outcome: list[Any] = []

    def begin() -> None:
        d: Deferred[int] = ensureDeferred(work(reactor))
        d.addBoth(outcome.append)
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(begin)
    reactor.run()
    result = outcome[0]
    if isinstance(result, Failure):
        result.raiseException()
    return int(result)


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _parser()
    args = parser.parse_args(argv)
    if getattr(args, "database", "") is None and not getattr(args, "data_dir", None):
        parser.error(f"no database: pass --database DSN or set {_ENV} (or --data-dir DIR: the embedded"
                     " server of a node's data directory)")
    return args


def _uses_database(args: argparse.Namespace) -> bool:
    return args.command == "config" and args.action not in ("init", "parse")


def _blocking(args: argparse.Namespace) -> None:
    """
    Run a command that needs no reactor.
    """
    if args.command == "plugin":
        _new_plugin(args.name, args.dir)
        return
    if args.command == "config":
        if args.action == "init":
            _init(args.file)
        else:
            _parse(args.file, args.plugins)
        return
    run: dict[str, Callable[[], None]] = {
        "bootstrap": lambda: _bootstrap(args.database),
        "up": lambda: _up(args.database),
        "status": lambda: _status(args.database),
        "reset": lambda: _reset(args.database, args.yes),
    }
    run[args.action]()


def _exit_code(e: BaseException) -> int:
    """
    Say on standard error what went wrong; return the exit code. Errors
    nobody expects are raised again.
    """
    from echogate.store.embedded import EmbeddedStartFailed

    if isinstance(e, EmbeddedStartFailed):
        print(f"echogate: {e}", file=sys.stderr)
        return DATABASE_ERROR
    if isinstance(e, (migrations.BadDSN, _Refused, PluginLoadError, ScaffoldError)):
        print(f"echogate: {e}", file=sys.stderr)
        return USAGE_ERROR
    if isinstance(e, declarative.DeclarativeError):
        for line in error_lines(e.fields):
            print(f"echogate: {line}", file=sys.stderr)
        return DATABASE_ERROR
    if isinstance(e, (migrations.Unreachable, migrations.MigrationFailed, migrations.SchemaOutdated,
                      sync.MissingSelectTags, GatewayError)):
        print(f"echogate: {e}", file=sys.stderr)
        return DATABASE_ERROR
    if isinstance(e, OSError):
        print(f"echogate: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return DATABASE_ERROR
    if isinstance(e, psycopg2.Error):
        reason = str(e).strip().splitlines()
        print(f"echogate: database error: {reason[0] if reason else type(e).__name__}",
              file=sys.stderr)
        return DATABASE_ERROR
    if isinstance(e, KeyboardInterrupt):
        print("echogate: interrupted", file=sys.stderr)
        return 130
    raise e


#: The embedded servers this command started (held until it exits).
_EMBEDDED: list[Any] = []


def _embedded_dsn(args: argparse.Namespace) -> None:
    """
    Without a DSN, use the embedded PostgreSQL server of C{--data-dir}
    (the one C{twistd -n echogate} starts there by default: started, or
    joined when the node runs, and migrated), so that the commands work
    next to a node on its zero-setup default.
    """
    if getattr(args, "database", "missing") is not None or not getattr(args, "data_dir", None):
        return
    from echogate.store.embedded import EmbeddedPostgres

    server, dsn = EmbeddedPostgres(args.data_dir).start_blocking()
    _EMBEDDED.append(server)
    args.database = dsn


def run(reactor: Any, argv: Sequence[str]) -> Deferred[int]:
    """
    L{main} on a reactor that runs already (the C{config} commands that
    use the database run on it; the others block): fire with the exit
    code.
    """
    args = _arguments(argv)
    if not _uses_database(args):
        return succeed(main(argv))
    try:
        _embedded_dsn(args)
    except Exception as e:
        return succeed(_exit_code(e))

    async def work() -> int:
        try:
            return await _config_database(reactor, args)
        except Exception as e:
            return _exit_code(e)

    return ensureDeferred(work())


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the C{echogate} command; return its exit code.
    """
    args = _arguments(argv)
    try:
        _embedded_dsn(args)
        if _uses_database(args):
            return _react(lambda reactor: _config_database(reactor, args))
        _blocking(args)
    except (Exception, KeyboardInterrupt) as e:
        return _exit_code(e)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
