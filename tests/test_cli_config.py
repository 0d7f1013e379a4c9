"""
Tests for the C{echogate config} commands (L{echogate.cli}, planning in
L{echogate.declarative.sync}) on the test PostgreSQL server.
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from typing import Any

import psycopg2
import yaml
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from echogate import cli, declarative
from echogate.registry import load_plugins
from tests.examples import example_module
from tests.gateway import start_gateway
from tests.postgres import PostgresMixin
from tests.waiting import until

PLUGINS = load_plugins("bundled")

#: A file of every kind of entity; the ids are derived.
FULL = """\
_format_version: "3.0"
services:
- name: alpha
  url: http://127.0.0.1:9/a
  tags: [team-a]
  routes:
  - name: alpha-route
    paths: [/alpha]
    tags: [team-a]
    plugins:
    - name: rate-limiting
      config: {minute: 60, policy: local}
      tags: [team-a]
  plugins:
  - name: key-auth
    tags: [team-a]
- name: beta
  url: http://127.0.0.1:9/b
  tags: [team-b]
  routes:
  - name: beta-route
    paths: [/beta]
    tags: [team-b]
consumers:
- username: alice
  tags: [team-a]
  keyauth_credentials:
  - key: alice-key
    tags: [team-a]
  acls:
  - group: admins
    tags: [team-a]
upstreams:
- name: pool.internal
  tags: [team-b]
  targets:
  - target: 10.0.0.1:8080
    tags: [team-b]
plugins:
- name: correlation-id
  tags: [team-b]
"""


def rows(dsn: str, table: str) -> list[dict[str, Any]]:
    """
    Every record of C{table}, by id.
    """
    connection = psycopg2.connect(dsn)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT entity FROM {table} ORDER BY id")
            return [row[0] for row in cursor.fetchall()]
    finally:
        connection.close()


def names(dsn: str, table: str, key: str = "name") -> list[str]:
    """
    The C{key} of every record of C{table}, sorted.
    """
    return sorted(str(r.get(key)) for r in rows(dsn, table))


def edited(text: str, **changes: Any) -> str:
    """
    C{text} (a declarative file) with top-level keys replaced.
    """
    data = yaml.safe_load(text)
    data.update(changes)
    return yaml.safe_dump(data, sort_keys=False)


class ConfigCommandTestCase(PostgresMixin, TestCase):
    """
    Run the C{config} commands in this process (L{cli.run} on the running
    reactor), with captured output.
    """

    timeout = 120

    def setUp(self) -> None:
        for name in ("ECHOGATE_DATABASE", "ECHOGATE_PLUGINS"):
            saved = os.environ.pop(name, None)
            if saved is not None:
                self.addCleanup(os.environ.__setitem__, name, saved)

    async def cli(self, *argv: str) -> tuple[int, str, str]:
        """
        Run the command; return its exit code, stdout and stderr.
        """
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        try:
            code = await cli.run(reactor, list(argv))
        except SystemExit as e:
            code = e.code  # type: ignore[assignment]
        finally:
            self.patch(sys, "stdout", sys.__stdout__)
            self.patch(sys, "stderr", sys.__stderr__)
        return code, out.getvalue(), err.getvalue()

    def file(self, text: str, suffix: str = ".yml") -> str:
        """
        A file holding C{text}; its path.
        """
        path = self.mktemp() + suffix
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    async def synced(self, text: str, *extra: str) -> str:
        """
        A fresh database synced to C{text}; its DSN.
        """
        dsn = self.database()
        code, _, err = await self.cli("config", "sync", self.file(text), "--database", dsn, *extra)
        self.assertEqual((code, err), (0, ""))
        return dsn


class InitParseTests(ConfigCommandTestCase):
    """
    C{echogate config init} and C{echogate config parse}.
    """

    async def test_init_loads(self) -> None:
        """
        C{init} writes a commented example that loads with the bundled
        plugins, and C{parse} accepts.
        """
        path = self.mktemp()
        code, out, _ = await self.cli("config", "init", path)
        self.assertEqual((code, out), (0, f"Wrote {path}\n"))
        with open(path, encoding="utf-8") as f:
            text = f.read()
        self.assertIn("# ", text)
        loaded = declarative.load(text, PLUGINS)
        self.assertEqual([r["name"] for r in loaded.records["services"]], ["example-service"])
        self.assertEqual(await self.cli("config", "parse", path), (0, "parse successful\n", ""))

    async def test_init_keeps_a_file(self) -> None:
        """
        C{init} does not overwrite a file (exit 2); C{-} writes to stdout.
        """
        path = self.file("mine")
        code, _, err = await self.cli("config", "init", path)
        self.assertEqual(code, cli.USAGE_ERROR)
        self.assertIn("exists", err)
        with open(path, encoding="utf-8") as f:
            self.assertEqual(f.read(), "mine")
        code, out, _ = await self.cli("config", "init", "-")
        self.assertEqual((code, out), (0, cli.EXAMPLE))

    async def test_parse_errors(self) -> None:
        """
        C{parse} of an invalid file prints every error with its path and
        exits 1.
        """
        path = self.file('_format_version: "3.0"\nbogus: 1\nservices:\n- name: a\n  url: http://x\n'
                         '  routes:\n  - paths: [nope]\n    methods: [1]\n- name: a\n  url: http://x\n')
        code, out, err = await self.cli("config", "parse", path)
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(err.splitlines(), [
            "echogate: bogus: unknown field",
            "echogate: services[0].routes[0].methods[0]: expected a string",
            "echogate: services[0].routes[0].paths[0]: should start with: / (fixed path) or ~/ (regex path)",
            "echogate: services[1]: uniqueness violation: 'services' entity with name set to 'a' already declared",
        ])

    async def test_parse_plugins(self) -> None:
        """
        C{parse} checks plugins against C{--plugins}: a plugin not enabled is
        an error; a file that cannot be read is one line.
        """
        path = self.file('_format_version: "3.0"\nplugins:\n- name: key-auth\n')
        self.assertEqual((await self.cli("config", "parse", path))[0], 0)
        code, _, err = await self.cli("config", "parse", path, "--plugins", "cors")
        self.assertEqual(code, 1)
        self.assertIn("plugins[0].name: plugin 'key-auth' not enabled", err)
        code, _, err = await self.cli("config", "parse", path + ".missing")
        self.assertEqual(code, 1)
        self.assertIn("No such file", err)


class ExportImportTests(ConfigCommandTestCase):
    """
    C{echogate config db_export} and C{db_import}.
    """

    async def test_export_loads_without_diff(self) -> None:
        """
        An export holds every entity; loading it gives the database's
        records, and C{diff} against it finds nothing.
        """
        dsn = await self.synced(FULL)
        path = self.mktemp() + ".yml"
        code, out, _ = await self.cli("config", "db_export", path, "--database", dsn)
        self.assertEqual((code, out), (0, f"Exported 12 entities to {path}\n"))
        loaded = declarative.load_file(path, PLUGINS)
        for entity in ("services", "routes", "plugins", "consumers", "acls", "targets"):
            self.assertEqual(sorted(loaded.records[entity], key=lambda r: r["id"]), rows(dsn, entity))
        code, out, _ = await self.cli("config", "diff", path, "--database", dsn, "--non-zero-exit-code")
        self.assertEqual((code, out), (0, "Summary: created 0, updated 0, deleted 0\n"))

    async def test_export_stdout_json(self) -> None:
        """
        C{-} exports to stdout; C{--format json} (or a C{.json} name) writes JSON.
        """
        dsn = await self.synced(FULL)
        code, out, _ = await self.cli("config", "db_export", "-", "--database", dsn, "--format", "json")
        self.assertEqual(code, 0)
        self.assertEqual(out, declarative.export({"services": rows(dsn, "services"), "routes": rows(dsn, "routes"),
                                                  "plugins": rows(dsn, "plugins"), "consumers": rows(dsn, "consumers"),
                                                  "keyauth_credentials": rows(dsn, "keyauth_credentials"),
                                                  "acls": rows(dsn, "acls"), "upstreams": rows(dsn, "upstreams"),
                                                  "targets": rows(dsn, "targets")}, format="json"))
        path = self.mktemp() + ".json"
        await self.cli("config", "db_export", path, "--database", dsn)
        with open(path, encoding="utf-8") as f:
            self.assertTrue(f.read().startswith("{"))

    async def test_import_adds_and_updates(self) -> None:
        """
        C{db_import} adds and updates the file's entities and deletes none.
        """
        dsn = await self.synced(FULL)
        text = edited(FULL, services=[{"name": "alpha", "url": "http://127.0.0.1:9/changed"},
                                      {"name": "gamma", "url": "http://127.0.0.1:9/g"}],
                      consumers=[], upstreams=[], plugins=[])
        code, out, _ = await self.cli("config", "db_import", self.file(text), "--database", dsn)
        self.assertEqual(code, 0)
        self.assertEqual(out.splitlines(), ["~ services alpha (path, tags)", "+ services gamma",
                                            "Summary: created 1, updated 1, deleted 0"])
        self.assertEqual(names(dsn, "services"), ["alpha", "beta", "gamma"])
        self.assertEqual(names(dsn, "routes"), ["alpha-route", "beta-route"])
        self.assertEqual([s["path"] for s in rows(dsn, "services") if s["name"] == "alpha"], ["/changed"])


class DiffSyncTests(ConfigCommandTestCase):
    """
    C{echogate config diff} and C{sync}.
    """

    async def test_sync_changes(self) -> None:
        """
        C{sync} creates, updates and deletes (children before parents) so
        that the database equals the file; C{diff} says so first, one line
        per entity.
        """
        dsn = await self.synced(FULL)
        text = edited(FULL, services=[{"name": "alpha", "url": "http://127.0.0.1:9/a", "tags": ["team-a"],
                                       "routes": [{"name": "alpha-route", "paths": ["/alpha", "/a2"],
                                                   "tags": ["team-a"]}]},
                                      {"name": "gamma", "url": "http://127.0.0.1:9/g"}])
        path = self.file(text)
        ids = {r["name"]: r["id"] for r in rows(dsn, "plugins")}
        expected = [
            "+ services gamma",
            "~ routes alpha-route (paths)",
            *sorted([f"- plugins {ids['key-auth']}", f"- plugins {ids['rate-limiting']}"]),
            "- routes beta-route",
            "- services beta",
        ]
        summary = "Summary: created 1, updated 1, deleted 4"
        code, out, _ = await self.cli("config", "diff", path, "--database", dsn)
        self.assertEqual((code, out.splitlines()), (0, [*expected, summary]))
        code, _, _ = await self.cli("config", "diff", path, "--database", dsn, "--non-zero-exit-code")
        self.assertEqual(code, 2)
        code, out, _ = await self.cli("config", "sync", path, "--database", dsn)
        self.assertEqual((code, out.splitlines()), (0, [*expected, summary]))
        self.assertEqual(names(dsn, "services"), ["alpha", "gamma"])
        self.assertEqual(names(dsn, "routes"), ["alpha-route"])
        self.assertEqual(names(dsn, "plugins"), ["correlation-id"])
        self.assertEqual(rows(dsn, "routes")[0]["paths"], ["/alpha", "/a2"])
        code, out, _ = await self.cli("config", "diff", path, "--database", dsn, "--non-zero-exit-code")
        self.assertEqual((code, out), (0, "Summary: created 0, updated 0, deleted 0\n"))

    async def test_dry_run(self) -> None:
        """
        C{sync --dry-run} prints the changes and writes nothing.
        """
        dsn = self.database()
        code, out, _ = await self.cli("config", "sync", self.file(FULL), "--database", dsn, "--dry-run")
        self.assertEqual(code, 0)
        self.assertIn("+ services alpha", out)
        self.assertTrue(out.endswith("(dry run: nothing written)\n"))
        self.assertEqual(rows(dsn, "services"), [])

    async def test_moves_between_parents(self) -> None:
        """
        A route moved from a service that goes to a new one is moved before
        the old service is deleted.
        """
        dsn = await self.synced('_format_version: "3.0"\nservices:\n- name: old\n  url: http://x\n'
                                'routes:\n- name: r\n  service: old\n  paths: [/r]\n')
        route_id = rows(dsn, "routes")[0]["id"]
        code, out, err = await self.cli("config", "sync", self.file(
            '_format_version: "3.0"\nservices:\n- name: new\n  url: http://x\n'
            f'routes:\n- name: r\n  id: {route_id}\n  service: new\n  paths: [/r]\n'), "--database", dsn)
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(out.splitlines(), ["+ services new", "~ routes r (service)", "- services old",
                                            "Summary: created 1, updated 1, deleted 1"])
        self.assertEqual(rows(dsn, "routes")[0]["service"], {"id": rows(dsn, "services")[0]["id"]})

    async def test_matches_by_name(self) -> None:
        """
        Entities the file gives no id are matched with the database's by
        name (or, for a plugin, its name and scope), keeping their ids, as
        for entities made through the Admin API.
        """
        given = {"id": str(uuid.uuid4())}
        dsn = await self.synced(
            '_format_version: "3.0"\nservices:\n- name: s\n'
            f'  id: {given["id"]}\n  url: http://x\n  plugins:\n  - name: key-auth\n'
            f'    id: {uuid.uuid4()}\n')
        before = {t: rows(dsn, t) for t in ("services", "plugins")}
        path = self.file('_format_version: "3.0"\nservices:\n- name: s\n  url: http://x\n'
                         '  plugins:\n  - name: key-auth\n')
        code, out, _ = await self.cli("config", "sync", path, "--database", dsn)
        self.assertEqual((code, out), (0, "Summary: created 0, updated 0, deleted 0\n"))
        self.assertEqual({t: rows(dsn, t) for t in ("services", "plugins")}, before)

    async def test_generated_keys_kept(self) -> None:
        """
        A key the file does not give (made up on load) is not changed by
        every sync: the database's stays.
        """
        text = '_format_version: "3.0"\nconsumers:\n- username: u\n  keyauth_credentials:\n  - {}\n'
        dsn = await self.synced(text)
        key = rows(dsn, "keyauth_credentials")[0]["key"]
        code, out, _ = await self.cli("config", "sync", self.file(text), "--database", dsn)
        self.assertEqual((code, out), (0, "Summary: created 0, updated 0, deleted 0\n"))
        self.assertEqual(rows(dsn, "keyauth_credentials")[0]["key"], key)

    async def test_select_tags(self) -> None:
        """
        With select tags, only the database's entities carrying them all are
        deleted; the others are left alone.
        """
        dsn = await self.synced(FULL)
        text = ('_format_version: "3.0"\nservices:\n- name: alpha\n  url: http://127.0.0.1:9/a\n'
                '  tags: [team-a]\n')
        path = self.file(text)
        code, out, _ = await self.cli("config", "diff", path, "--database", dsn, "--select-tag", "team-a")
        self.assertEqual(code, 0)
        self.assertEqual(out.splitlines()[0], "- acls " + rows(dsn, "acls")[0]["id"])
        self.assertEqual(out.splitlines()[-1], "Summary: created 0, updated 0, deleted 6")
        code, _, _ = await self.cli("config", "sync", path, "--database", dsn, "--select-tag", "team-a")
        self.assertEqual(code, 0)
        self.assertEqual(names(dsn, "services"), ["alpha", "beta"])
        self.assertEqual(names(dsn, "routes"), ["beta-route"])
        self.assertEqual(names(dsn, "plugins"), ["correlation-id"])
        self.assertEqual(names(dsn, "consumers", "username"), [])
        self.assertEqual(names(dsn, "targets", "target"), ["10.0.0.1:8080"])

    async def test_select_tags_required(self) -> None:
        """
        With select tags, an entity of the file without them all is an
        error; nothing is written.
        """
        dsn = self.database()
        code, out, err = await self.cli("config", "sync", self.file(FULL), "--database", dsn,
                                        "--select-tag", "team-a")
        self.assertEqual((code, out), (1, ""))
        self.assertIn("lack the select tags team-a: services beta", err)
        self.assertEqual(rows(dsn, "services"), [])

    async def test_one_transaction(self) -> None:
        """
        A file the database refuses (a consumer's username taken by another
        id) fails the sync as a whole: none of its creates, updates or
        deletes are written.
        """
        dsn = await self.synced(FULL)
        before = {t: rows(dsn, t) for t in ("services", "routes", "consumers", "plugins")}
        text = edited(FULL, services=[{"name": "alpha", "url": "http://127.0.0.1:9/other"},
                                      {"name": "delta", "url": "http://127.0.0.1:9/d"}],
                      consumers=[{"username": "alice", "id": str(uuid.uuid4())}])
        code, out, err = await self.cli("config", "sync", self.file(text), "--database", dsn)
        self.assertEqual(code, 1)
        self.assertIn("+ consumers alice", out)
        self.assertIn("sync failed, nothing was written: UNIQUE violation", err)
        self.assertIn("alice", err)
        self.assertEqual({t: rows(dsn, t) for t in before}, before)

    async def test_no_database(self) -> None:
        """
        Without a schema, the commands on the database say how to make one.
        """
        code, _, err = await self.cli("config", "db_export", "-", "--database", self.database(migrated=False))
        self.assertEqual(code, 1)
        self.assertIn("no echogate schema; run: echogate migrations", err)


class RoundTripTests(ConfigCommandTestCase):
    """
    C{db_export}, C{sync} into an empty database, C{db_export} again.
    """

    async def test_round_trip(self) -> None:
        """
        Syncing an export into an empty database exports the same file.
        """
        first = await self.synced(FULL)
        code, exported, _ = await self.cli("config", "db_export", "-", "--database", first)
        self.assertEqual(code, 0)
        second = await self.synced(exported)
        code, again, _ = await self.cli("config", "db_export", "-", "--database", second)
        self.assertEqual((code, again), (0, exported))
        self.assertEqual(rows(second, "routes"), rows(first, "routes"))


class PluginEntityTests(ConfigCommandTestCase):
    """
    The entities plugins declare, synced, diffed, imported and exported
    by the commands (their storage declared before they are written).
    """

    def setUp(self) -> None:
        super().setUp()
        tokens = example_module("entity-plugin", "tokens_plugin")
        enabled = dict(PLUGINS, **{"token-auth": tokens.TokenAuth()})
        self.patch(cli, "load_plugins", lambda setting: enabled)

    TOKENS = FULL + """example_tokens:
- token: t-top
  consumer: alice
  label: deploys
"""

    async def test_sync_round_trip(self) -> None:
        """
        A file with a plugin's entity, top-level and nested, syncs into the
        generic table; its export syncs into an empty database and exports
        the same file.
        """
        text = self.TOKENS.replace("  acls:\n", "  example_tokens:\n  - token: t-nested\n    tags: [team-a]\n  acls:\n")
        first = await self.synced(text)
        self.assertEqual(sorted((r["token"], r["label"]) for r in rows(first, "plugin_entities")),
                         [("t-nested", None), ("t-top", "deploys")])
        code, exported, _ = await self.cli("config", "db_export", "-", "--database", first)
        self.assertEqual(code, 0)
        self.assertIn("example_tokens:", exported)
        second = await self.synced(exported)
        code, again, _ = await self.cli("config", "db_export", "-", "--database", second)
        self.assertEqual((code, again), (0, exported))

    async def test_diff_import_sync(self) -> None:
        """
        C{diff} shows a changed record by its key, C{db_import} adds
        without deleting, C{sync} deletes what the file lacks.
        """
        dsn = await self.synced(self.TOKENS)
        changed = self.TOKENS.replace("label: deploys", "label: releases")
        code, out, _ = await self.cli("config", "diff", self.file(changed), "--database", dsn)
        self.assertEqual((code, out.splitlines()),
                         (0, ["~ example_tokens t-top (label)", "Summary: created 0, updated 1, deleted 0"]))
        extra = changed + "- token: t-two\n  consumer: alice\n"
        code, _, err = await self.cli("config", "db_import", self.file(extra), "--database", dsn)
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(names(dsn, "plugin_entities", "token"), ["t-top", "t-two"])
        code, out, err = await self.cli("config", "sync", self.file(changed), "--database", dsn)
        self.assertEqual((code, err), (0, ""))
        self.assertIn("- example_tokens t-two", out)
        self.assertEqual([(r["token"], r["label"]) for r in rows(dsn, "plugin_entities")], [("t-top", "releases")])


class NodeFollowsTests(ConfigCommandTestCase):
    """
    A running node picks up a sync (LISTEN/NOTIFY) like an Admin API write.
    """

    async def test_node_follows_sync(self) -> None:
        """
        Routes a sync creates are proxied by a node on the same database,
        and routes it deletes are gone.
        """
        dsn = self.database()
        node = await start_gateway(self, database=dsn)
        self.assertEqual((await node.proxy("GET", "/synced")).code, 404)
        first = ('_format_version: "3.0"\nservices:\n- name: s\n  url: http://127.0.0.1:9\n  routes:\n'
                 '  - name: synced\n    paths: [/synced]\n    plugins:\n'
                 '    - name: request-termination\n      config: {status_code: 200, message: synced}\n')
        code, _, _ = await self.cli("config", "sync", self.file(first), "--database", dsn)
        self.assertEqual(code, 0)

        async def answers(code: int) -> bool:
            return (await node.proxy("GET", "/synced")).code == code

        await until(lambda: answers(200))
        self.assertEqual((await node.proxy("GET", "/synced")).json(), {"message": "synced"})
        code, _, _ = await self.cli("config", "sync", self.file('_format_version: "3.0"\n'), "--database", dsn)
        self.assertEqual(code, 0)
        await until(lambda: answers(404))


class ConsoleScriptTests(PostgresMixin, TestCase):
    """
    The commands as the console script runs them (L{cli.main} running the
    reactor), in a process of their own.
    """

    timeout = 120

    def test_sync_export(self) -> None:
        """
        C{sync} then C{db_export} to stdout, each in its own process.
        """
        dsn = self.database()
        path = os.path.abspath(self.mktemp() + ".yml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(FULL)
        env = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
        env.pop("ECHOGATE_DATABASE", None)
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

        def echogate(*argv: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "echogate.cli", *argv], capture_output=True,
                                  text=True, env=env, cwd=here, timeout=60)

        synced = echogate("config", "sync", path, "--database", dsn)
        self.assertEqual((synced.returncode, synced.stderr), (0, ""))
        self.assertIn("+ services alpha", synced.stdout)
        exported = echogate("config", "db_export", "-", "--database", dsn)
        self.assertEqual(exported.returncode, 0)
        self.assertEqual(sorted(r["name"] for r in yaml.safe_load(exported.stdout)["services"]),
                         ["alpha", "beta"])

    def test_embeddedDataDir(self) -> None:
        """
        Without a DSN, the commands use the embedded server of
        C{--data-dir} (the node's zero-setup default): started, migrated,
        synced, and exported from again by a second process.
        """
        data_dir = os.path.abspath(self.mktemp())
        path = os.path.abspath(self.mktemp() + ".yml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(FULL)
        env = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
        env.pop("ECHOGATE_DATABASE", None)
        env.pop("ECHOGATE_DATA_DIR", None)
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

        def echogate(*argv: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "echogate.cli", *argv], capture_output=True,
                                  text=True, env=env, cwd=here, timeout=120)

        synced = echogate("config", "sync", path, "--data-dir", data_dir)
        self.assertEqual(synced.returncode, 0, synced.stderr)
        self.assertTrue(os.path.isdir(os.path.join(data_dir, "postgres")))
        exported = echogate("config", "db_export", "-", "--data-dir", data_dir)
        self.assertEqual(exported.returncode, 0, exported.stderr)
        self.assertEqual(sorted(r["name"] for r in yaml.safe_load(exported.stdout)["services"]),
                         ["alpha", "beta"])
