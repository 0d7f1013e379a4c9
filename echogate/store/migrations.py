"""
echogate's database schema, as a list of versioned migrations.

Each migration runs in its own transaction and is recorded in
C{schema_migrations}; running them again applies only what is pending.
A session-level advisory lock serialises concurrent runs: when two
processes migrate the same database at once, one applies the migrations
while the other waits, then finds nothing left to do.

The functions here use short blocking psycopg2 connections: the
C{echogate migrations} command calls them directly, and the gateway calls
the C{async} variants (L{up}, L{status}, L{reset}), which run them in the
reactor's thread pool, at start-up only.
"""
from __future__ import annotations

import datetime
import re
from contextlib import contextmanager
from typing import Iterable, Iterator, Union, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs
import psycopg2
import psycopg2.extensions
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from echogate.store.pgdriver import conninfo, parse_dsn

#: The advisory lock key that serialises migration runs ("echogate").
LOCK_KEY = 0x6563686F67617465

#: What a migration target may be: a DSN, or an open psycopg2 connection.
Target = Union[str, psycopg2.extensions.connection]


@attrs.frozen
class Migration:
    """
    One step of the schema.

    @ivar version: its position; versions increase by one.
    @ivar name: a short description, shown by C{echogate migrations status}.
    @ivar sql: the statements, run in one transaction.
    @ivar tables: the tables it creates (dropped by L{drop}).
    """

    version: int
    name: str
    sql: str = attrs.field(repr=False)
    tables: tuple[str, ...] = ()


@attrs.frozen
class Applied:
    """
    A migration recorded in C{schema_migrations}.
    """

    version: int
    name: str
    applied_at: datetime.datetime


def _entity_table(name: str, columns: str = "") -> str:
    return f"""
CREATE TABLE {name} (
    id uuid PRIMARY KEY,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    tags text[],{columns}
    entity jsonb NOT NULL
);
CREATE INDEX {name}_tags_idx ON {name} USING gin (tags);
"""


_INITIAL = (
    _entity_table("services", """
    name text CONSTRAINT services_name_key UNIQUE,""")
    + _entity_table("routes", """
    name text CONSTRAINT routes_name_key UNIQUE,
    service_id uuid CONSTRAINT routes_service_id_fkey
        REFERENCES services (id) ON DELETE RESTRICT,""")
    + "CREATE INDEX routes_service_id_idx ON routes (service_id);\n"
    + _entity_table("consumers", """
    username text CONSTRAINT consumers_username_key UNIQUE,
    custom_id text CONSTRAINT consumers_custom_id_key UNIQUE,""")
    + _entity_table("plugins", """
    name text NOT NULL,
    service_id uuid CONSTRAINT plugins_service_id_fkey
        REFERENCES services (id) ON DELETE CASCADE,
    route_id uuid CONSTRAINT plugins_route_id_fkey
        REFERENCES routes (id) ON DELETE CASCADE,
    consumer_id uuid CONSTRAINT plugins_consumer_id_fkey
        REFERENCES consumers (id) ON DELETE CASCADE,""")
    + """
CREATE UNIQUE INDEX plugins_scope_key
    ON plugins (name, service_id, route_id, consumer_id) NULLS NOT DISTINCT;
CREATE INDEX plugins_service_id_idx ON plugins (service_id);
CREATE INDEX plugins_route_id_idx ON plugins (route_id);
CREATE INDEX plugins_consumer_id_idx ON plugins (consumer_id);

CREATE TABLE config_version (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version bigint NOT NULL
);
INSERT INTO config_version (version) VALUES (0);
"""
)


def _credential_table(name: str, columns: str = "") -> str:
    return _entity_table(name, f"""
    consumer_id uuid NOT NULL CONSTRAINT {name}_consumer_id_fkey
        REFERENCES consumers (id) ON DELETE CASCADE,{columns}""") + (
        f"CREATE INDEX {name}_consumer_id_idx ON {name} (consumer_id);\n")


# Consumers' credentials (echogate.entities.credentials): deleted with their consumer;
# keys and usernames unique (their unique index is also the lookup index).
_CREDENTIALS = (
    _credential_table("keyauth_credentials", """
    key text NOT NULL CONSTRAINT keyauth_credentials_key_key UNIQUE,""")
    + _credential_table("basicauth_credentials", """
    username text NOT NULL CONSTRAINT basicauth_credentials_username_key UNIQUE,""")
    + _credential_table("jwt_secrets", """
    key text NOT NULL CONSTRAINT jwt_secrets_key_key UNIQUE,""")
    + _credential_table("acls")
    + "CREATE UNIQUE INDEX acls_consumer_group_key ON acls (consumer_id, (entity->>'group'));\n"
)

_RATELIMITING = """
CREATE TABLE ratelimiting_counters (
    identifier text NOT NULL,
    period text NOT NULL,
    period_start bigint NOT NULL,
    value bigint NOT NULL,
    expires_at bigint NOT NULL,
    PRIMARY KEY (identifier, period, period_start)
);
CREATE INDEX ratelimiting_counters_expires_at_idx ON ratelimiting_counters (expires_at);
"""

# Load balancing (echogate.entities.upstreams): upstreams, their targets
# (unique within the upstream), and the health a target (or one of its
# addresses) was set to through the Admin API, which every node reads with
# the configuration.
_UPSTREAMS = (
    _entity_table("upstreams", """
    name text NOT NULL CONSTRAINT upstreams_name_key UNIQUE,""")
    + _entity_table("targets", """
    upstream_id uuid NOT NULL CONSTRAINT targets_upstream_id_fkey
        REFERENCES upstreams (id) ON DELETE CASCADE,
    target text NOT NULL,""")
    + "CREATE UNIQUE INDEX targets_upstream_target_key ON targets (upstream_id, target);\n"
    + _entity_table("target_health_overrides", """
    upstream_id uuid NOT NULL CONSTRAINT target_health_overrides_upstream_id_fkey
        REFERENCES upstreams (id) ON DELETE CASCADE,
    target_id uuid NOT NULL CONSTRAINT target_health_overrides_target_id_fkey
        REFERENCES targets (id) ON DELETE CASCADE,
    address text,""")
    + "CREATE UNIQUE INDEX target_health_overrides_target_address_key"
      " ON target_health_overrides (target_id, address) NULLS NOT DISTINCT;\n"
    + "CREATE INDEX target_health_overrides_upstream_id_idx ON target_health_overrides (upstream_id);\n"
)

# TLS (echogate.entities.certificates): certificates, their SNI names (deleted
# with the certificate), CA certificates (unique by digest), and a service's
# client certificate (a certificate in use by a service cannot be deleted).
_CERTIFICATES = (
    _entity_table("certificates")
    + _entity_table("snis", """
    name text NOT NULL CONSTRAINT snis_name_key UNIQUE,
    certificate_id uuid NOT NULL CONSTRAINT snis_certificate_id_fkey
        REFERENCES certificates (id) ON DELETE CASCADE,""")
    + "CREATE INDEX snis_certificate_id_idx ON snis (certificate_id);\n"
    + _entity_table("ca_certificates", """
    cert_digest text NOT NULL CONSTRAINT ca_certificates_cert_digest_key UNIQUE,""")
    + """
ALTER TABLE services ADD COLUMN client_certificate_id uuid
    CONSTRAINT services_client_certificate_id_fkey REFERENCES certificates (id) ON DELETE RESTRICT;
CREATE INDEX services_client_certificate_id_idx ON services (client_certificate_id);
"""
)

# Entities that plugins declare (echogate.pdk.entities.PluginEntity): one
# generic table for every plugin's entities, so that a plugin installed
# later needs no migration of its own. A record belongs to at most one
# consumer, service or route and is deleted with it; its unique fields'
# values are rows of plugin_entity_keys, unique per entity and field, and
# deleted with the record.
_PLUGIN_ENTITIES = """
CREATE TABLE plugin_entities (
    id uuid PRIMARY KEY,
    entity_name text NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    tags text[],
    consumer_id uuid CONSTRAINT plugin_entities_consumer_id_fkey
        REFERENCES consumers (id) ON DELETE CASCADE,
    service_id uuid CONSTRAINT plugin_entities_service_id_fkey
        REFERENCES services (id) ON DELETE CASCADE,
    route_id uuid CONSTRAINT plugin_entities_route_id_fkey
        REFERENCES routes (id) ON DELETE CASCADE,
    entity jsonb NOT NULL
);
CREATE INDEX plugin_entities_tags_idx ON plugin_entities USING gin (tags);
CREATE INDEX plugin_entities_entity_name_idx ON plugin_entities (entity_name, id);
CREATE INDEX plugin_entities_consumer_id_idx ON plugin_entities (consumer_id);
CREATE INDEX plugin_entities_service_id_idx ON plugin_entities (service_id);
CREATE INDEX plugin_entities_route_id_idx ON plugin_entities (route_id);
CREATE TABLE plugin_entity_keys (
    entity_name text NOT NULL,
    field text NOT NULL,
    value text NOT NULL,
    id uuid NOT NULL CONSTRAINT plugin_entity_keys_id_fkey
        REFERENCES plugin_entities (id) ON DELETE CASCADE,
    CONSTRAINT plugin_entity_keys_pkey PRIMARY KEY (entity_name, field, value)
);
CREATE INDEX plugin_entity_keys_id_idx ON plugin_entity_keys (id);
"""

#: Every migration, in order.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "services, routes, consumers, plugins, config_version", _INITIAL,
              ("plugins", "routes", "consumers", "services", "config_version")),
    Migration(2, "credentials: key-auth, basic-auth, jwt, acls", _CREDENTIALS,
              ("keyauth_credentials", "basicauth_credentials", "jwt_secrets", "acls")),
    Migration(3, "rate-limiting counters shared by the cluster policy", _RATELIMITING,
              ("ratelimiting_counters",)),
    Migration(4, "load balancing: upstreams, targets, target health overrides", _UPSTREAMS,
              ("target_health_overrides", "targets", "upstreams")),
    Migration(5, "TLS: certificates, snis, ca_certificates, services' client certificate",
              _CERTIFICATES, ("snis", "ca_certificates", "certificates")),
    Migration(6, "plugin entities: the generic table of the entities plugins declare", _PLUGIN_ENTITIES,
              ("plugin_entity_keys", "plugin_entities")),
)

_MINIMUM_SERVER = 150000  # NULLS NOT DISTINCT


class BadDSN(ValueError):
    """
    The database DSN cannot be parsed.
    """


class Unreachable(Exception):
    """
    The database server cannot be reached or refused the connection.
    """


class MigrationFailed(Exception):
    """
    A migration failed and was rolled back; the ones before it stay.
    """


class SchemaOutdated(Exception):
    """
    The database has no echogate schema, or migrations are pending.
    """


def redact(dsn: str) -> str:
    """
    C{dsn} with any password replaced by C{***}, for messages and logs.
    """
    if "://" not in dsn:
        return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", dsn)
    parts = urlsplit(dsn)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, colon, password = userinfo.partition(":")
        if password:
            userinfo = f"{user}{colon}***"
        netloc = f"{userinfo}@{host}"
    query = parts.query
    if "password" in query:
        query = urlencode([(k, "***" if k == "password" else v)
                           for k, v in parse_qsl(query, keep_blank_values=True)], safe="/*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def connect(dsn: str) -> psycopg2.extensions.connection:
    """
    Open a blocking connection, giving up after ten seconds.

    @raise BadDSN: C{dsn} cannot be parsed.
    @raise Unreachable: no server answered, or it refused us.
    """
    try:
        parse_dsn(dsn)
    except psycopg2.ProgrammingError as e:
        raise BadDSN(f"invalid database DSN {redact(dsn)!r}: {_first_line(e)}") from None
    try:
        return psycopg2.connect(conninfo(dsn, connect_timeout=10, application_name="echogate-migrations"))
    except psycopg2.OperationalError as e:
        raise Unreachable(f"cannot connect to {redact(dsn)}: {_first_line(e)}") from None


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else error.__class__.__name__


@contextmanager
def _session(target: Target) -> Iterator[psycopg2.extensions.connection]:
    if not isinstance(target, str):
        yield target
        return
    connection = connect(target)
    try:
        yield connection
    finally:
        connection.close()


@contextmanager
def _locked(connection: psycopg2.extensions.connection) -> Iterator[None]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
    connection.commit()
    try:
        yield
    finally:
        if not connection.closed:
            connection.rollback()
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
            connection.commit()


def _applied(connection: psycopg2.extensions.connection) -> list[Applied] | None:
    """
    The recorded migrations, or C{None} when there is no
    C{schema_migrations} table.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
        row = cursor.fetchone()
        if row is None or not row[0]:
            connection.rollback()
            return None
        cursor.execute("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
        rows = cursor.fetchall()
    connection.rollback()
    return [Applied(*row) for row in rows]


def _check_server(connection: psycopg2.extensions.connection) -> None:
    if connection.server_version < _MINIMUM_SERVER:
        raise MigrationFailed(
            f"echogate needs PostgreSQL 15 or newer; this server is {connection.server_version}")


def migrate(target: Target) -> list[Migration]:
    """
    Apply the pending migrations (blocking) and return them.

    @raise BadDSN: see L{connect}.
    @raise Unreachable: see L{connect}.
    @raise MigrationFailed: a migration failed; it was rolled back.
    """
    done: list[Migration] = []
    with _session(target) as connection, _locked(connection):
        _check_server(connection)
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())")
        connection.commit()
        applied = {a.version for a in _applied(connection) or ()}
        for migration in MIGRATIONS:
            if migration.version in applied:
                continue
            try:
                with connection.cursor() as cursor:
                    cursor.execute(migration.sql)
                    cursor.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name))
                connection.commit()
            except psycopg2.Error as e:
                connection.rollback()
                raise MigrationFailed(
                    f"migration {migration.version} ({migration.name}) failed:"
                    f" {_first_line(e)}") from e
            done.append(migration)
    return done


def read_status(target: Target) -> tuple[list[Applied], list[Migration]]:
    """
    The applied migrations and the pending ones (blocking).
    """
    with _session(target) as connection:
        applied = _applied(connection) or []
    versions = {a.version for a in applied}
    return applied, [m for m in MIGRATIONS if m.version not in versions]


def drop(target: Target) -> list[str]:
    """
    Drop every table echogate's migrations created, and
    C{schema_migrations} (blocking). Returns the tables that existed.
    """
    tables = [t for m in reversed(MIGRATIONS) for t in m.tables] + ["schema_migrations"]
    with _session(target) as connection, _locked(connection):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT relname FROM pg_class WHERE relkind = 'r'"
                " AND relname = ANY(%s) AND pg_table_is_visible(oid)", (tables,))
            existing = {name for (name,) in cursor.fetchall()}
            cursor.execute("DROP TABLE IF EXISTS " + ", ".join(tables))
        connection.commit()
    return [t for t in tables if t in existing]


def check_applied(versions: Iterable[int] | None, dsn: str) -> None:
    """
    Fail unless every migration is among C{versions} (C{None}: no
    C{schema_migrations} table at all).

    @raise SchemaOutdated: naming the command that fixes it.
    """
    fix = f"run: echogate migrations up --database {redact(dsn)}"
    if versions is None:
        raise SchemaOutdated(f"the database has no echogate schema; {fix}")
    known = set(versions)
    pending = [m for m in MIGRATIONS if m.version not in known]
    if pending:
        names = ", ".join(f"{m.version} ({m.name})" for m in pending)
        raise SchemaOutdated(f"database migrations are pending: {names}; {fix}")


def _pool(reactor: IReactorThreads | None) -> tuple[IReactorThreads, ThreadPool]:
    """
    C{reactor} (the global one for C{None}: the console script's) and its
    thread pool.
    """
    if reactor is None:
        from twisted.internet import reactor as installed

        reactor = cast(IReactorThreads, installed)
    return reactor, reactor.getThreadPool()


async def up(target: Target, reactor: IReactorThreads | None = None) -> list[Migration]:
    """
    L{migrate} in the reactor's thread pool.

    @param reactor: the reactor whose thread pool to use (the global one
        by default).
    """
    threads, pool = _pool(reactor)
    return await deferToThreadPool(threads, pool, migrate, target)


async def status(target: Target, reactor: IReactorThreads | None = None) -> tuple[list[Applied], list[Migration]]:
    """
    L{read_status} in the reactor's thread pool.
    """
    threads, pool = _pool(reactor)
    return await deferToThreadPool(threads, pool, read_status, target)


async def reset(target: Target, reactor: IReactorThreads | None = None) -> list[str]:
    """
    L{drop} in the reactor's thread pool.
    """
    threads, pool = _pool(reactor)
    return await deferToThreadPool(threads, pool, drop, target)
