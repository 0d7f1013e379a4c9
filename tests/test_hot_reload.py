"""
Tests for L{echogate.reloading}: a C{--dev} node reloads a plugin whose
drop-in file changed, keeps the old version when the new one cannot be
used, lets requests in flight finish with the old object, and watches
nothing without C{--dev}.

Each test runs a DB-less node in this process on the real reactor, with a
drop-in in a temporary C{twisted/plugins/} directory on C{sys.path}, and
changes the file for real.
"""
from __future__ import annotations

import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import LogEvent, Logger, formatEvent, globalLogPublisher
from twisted.trial import unittest

from tests.gateway import Answer, RunningGateway
from tests.test_dbless import kong_yml, start_dbless
from tests.test_registry_dropins import DropIns
from tests.upstream_server import start_upstream
from tests.waiting import until

_log = Logger(namespace="tests.hot_reload")

#: Deferreds the drop-in's C{access} waits on, one per request, while any
#: are here (the in-flight test puts one in).
GATES: list[Deferred[None]] = []

MODULE = "hot_echo_dropin"

#: The drop-in, version by version. Line 2 is where C{{imports}} go.
SOURCE = """\
from echogate.plugin import GatewayPlugin
{imports}
from echogate.schema import Record
from echogate.schema.fields import Boolean, Integer, String

MARKER = "{marker}"

class HotEcho(GatewayPlugin):
    name = "hot-echo"
    version = "{version}"
    priority = 10
    config_schema = Record({{{fields}}})

    def access(self, ctx, config):
        import tests.test_hot_reload as t
        return t.GATES.pop(0) if t.GATES else None

    def header_filter(self, ctx, config):
        ctx.response.set_header("X-Hot", MARKER)


hotEcho = HotEcho()
"""

GREETING = '"greeting": String(default="hi")'


def source(version: str, marker: str, *, imports: str = "", fields: str = GREETING) -> str:
    return SOURCE.format(version=version, marker=marker, imports=imports, fields=fields)


class HotReloadTestCase(unittest.TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.upstream, self.upstream_port = start_upstream(self)
        self.dropins = DropIns(self)
        self.path = self.dropins.plugins.child(MODULE + ".py").path
        self.events: list[LogEvent] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.addCleanup(GATES.clear)

    def write(self, text: str) -> None:
        self.dropins.write(MODULE, text)

    async def node(self, *, dev: bool = True) -> RunningGateway:
        self.write(source("1.0.0", "v1"))
        path = self.mktemp() + ".yml"
        with open(path, "w") as f:
            f.write(kong_yml(self.upstream_port, plugins=[{"name": "hot-echo"}]))
        return await start_dbless(self, declarative_config=path,
                                  settings={"plugins": "hot-echo", "dev": "on" if dev else "off"})

    async def marker(self, gateway: RunningGateway) -> str | None:
        answer: Answer = await gateway.proxy("GET", "/mock/request", headers={"Host": "mockbin.org"})
        return answer.header("X-Hot")

    def lines(self) -> list[str]:
        """
        The reloader's log lines so far.
        """
        return [formatEvent(e) for e in self.events if e.get("log_namespace") == "echogate.reloading"]

    async def kept(self, gateway: RunningGateway, *fragments: str) -> list[str]:
        """
        Wait for the reloader's error line that says the old version keeps
        serving, which holds every one of C{fragments}; the old version
        still serves. Returns the reloader's error lines.
        """
        await until(lambda: any("keeps serving" in line for line in self.lines()), message="no keep-old line")
        errors = [formatEvent(e) for e in self.events
                  if e.get("log_namespace") == "echogate.reloading" and e["log_level"].name == "error"]
        keeping = [line for line in errors if "keeps serving" in line]
        self.assertEqual(len(keeping), 1, errors)
        for fragment in fragments:
            self.assertIn(fragment, keeping[0])
        self.assertEqual(gateway.service.plugins["hot-echo"].version, "1.0.0")
        self.assertEqual(await self.marker(gateway), "v1")
        return errors


class ReloadTests(HotReloadTestCase):
    async def test_behaviourChange(self) -> None:
        """
        Saving a new version of the drop-in changes what the next request
        gets, and the Admin API validates with the new schema; the time from
        the save to the first request that shows it is measured and logged.
        """
        gateway = await self.node()
        self.assertEqual(await self.marker(gateway), "v1")
        saved = time.monotonic()
        self.write(source("1.1.0", "v2", fields=GREETING + ', "shout": Boolean(default=False)'))

        async def changed() -> bool:
            return await self.marker(gateway) == "v2"

        await until(changed, interval=0.01, message="the new version never served")
        elapsed = time.monotonic() - saved
        print(f"\nhot reload: from saving the file to the new behaviour: {elapsed * 1000:.0f} ms")
        _log.info("hot reload: from saving the file to the new behaviour: {ms:.0f} ms", ms=elapsed * 1000)
        self.assertEqual(gateway.service.plugins["hot-echo"].version, "1.1.0")
        schema = await gateway.admin("GET", "/schemas/plugins/hot-echo")
        self.assertIn(b"shout", schema.body)
        checked = await gateway.admin("POST", "/schemas/plugins/validate",
                                      json={"name": "hot-echo", "config": {"shout": True}})
        self.assertEqual(checked.code, 200, checked)

    async def test_syntaxError(self) -> None:
        """
        A syntax error keeps the old version serving and is logged on one
        line with the file and line number.
        """
        gateway = await self.node()
        self.write(source("1.1.0", "v2").replace("def header_filter(self, ctx, config):",
                                                  "def header_filter(self, ctx, config)"))
        line = source("1.1.0", "v2").splitlines().index("    def header_filter(self, ctx, config):") + 1
        await self.kept(gateway, f"{self.path}:{line}", "SyntaxError")

    async def test_failingImport(self) -> None:
        """
        A drop-in whose import raises keeps the old version serving, logged
        on one line with the file and line of the failing import.
        """
        gateway = await self.node()
        self.write(source("1.1.0", "v2", imports="import echogate_no_such_module_here"))
        await self.kept(gateway, f"{self.path}:2", "ModuleNotFoundError")

    async def test_failingImportRestoresGlobals(self) -> None:
        """
        A drop-in that fails half way through its import leaves the old
        object's module globals as they were.
        """
        gateway = await self.node()
        self.write(source("1.1.0", "v2") + "\nraise RuntimeError('half way')\n")
        await self.kept(gateway, "RuntimeError: half way")
        import sys

        self.assertIs(sys.modules[f"twisted.plugins.{MODULE}"].hotEcho, gateway.service.plugins["hot-echo"])

    async def test_schemaRefusesStoredConfig(self) -> None:
        """
        A new schema that a stored config does not pass keeps the old
        version, with a line naming the config.
        """
        gateway = await self.node()
        self.write(source("1.1.0", "v2", fields='"greeting": Integer()'))
        errors = await self.kept(gateway, "stored configs refused by the new schema")
        refused = [line for line in errors if "does not validate with the new schema" in line]
        self.assertEqual(len(refused), 1, errors)
        self.assertIn("greeting", refused[0])

    async def test_inFlightFinishWithOld(self) -> None:
        """
        A request in flight when the plugin is swapped finishes with the old
        object; the next one gets the new.
        """
        gateway = await self.node()
        gate: Deferred[None] = Deferred()
        GATES.append(gate)
        first = Deferred.fromCoroutine(self.marker(gateway))
        await until(lambda: not GATES, message="the request never reached access")
        self.write(source("1.1.0", "v2"))
        await until(lambda: gateway.service.plugins["hot-echo"].version == "1.1.0", message="no reload")
        self.assertEqual(await self.marker(gateway), "v2")
        self.assertNoResult(first)
        gate.callback(None)
        self.assertEqual(await first, "v1")


def _reloader_polls() -> list[Any]:
    """
    The reloader's polls scheduled on the reactor.
    """
    return [call for call in reactor.getDelayedCalls()
            if isinstance(call.func, LoopingCall)
            and getattr(getattr(call.func, "f", None), "__module__", "") == "echogate.reloading"]


class WatchingTests(HotReloadTestCase):
    async def test_notWithoutDev(self) -> None:
        """
        Without C{--dev}, nothing is watched: no poll, and a changed file
        changes nothing.
        """
        gateway = await self.node(dev=False)
        self.assertIsNone(gateway.service.reloader)
        self.assertEqual(_reloader_polls(), [])

    async def test_pollsWithDev(self) -> None:
        """
        With C{--dev}, one poll every 0.2 s watches the drop-in.
        """
        gateway = await self.node()
        polls = _reloader_polls()
        self.assertEqual(len(polls), 1)
        self.assertEqual(polls[0].func.interval, 0.2)
        self.assertEqual(gateway.service.reloader.sources["hot-echo"].files, (self.path,))


class DevSettingTests(unittest.SynchronousTestCase):
    def test_flag(self) -> None:
        """
        C{--dev} takes no value and turns development mode on; it is off by default.
        """
        from echogate.settings import Options

        options = Options()
        options.environ = {}
        options.parseOptions(["--dev"])
        self.assertTrue(options.settings.dev)
        options = Options()
        options.environ = {}
        options.parseOptions([])
        self.assertFalse(options.settings.dev)

    def test_environmentAndFile(self) -> None:
        """
        C{ECHOGATE_DEV=on} and C{dev = on} in the config file turn it on too.
        """
        from echogate.settings import resolve

        self.assertTrue(resolve({}, {"ECHOGATE_DEV": "on"}, None).dev)
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("dev = on\n")
        self.assertTrue(resolve({}, {}, path).dev)

    def test_notWithWorkers(self) -> None:
        """
        Development mode reloads plugins in one process: more workers are refused.
        """
        from echogate.settings import ConfigError, resolve

        with self.assertRaises(ConfigError):
            resolve({"dev": "on", "workers": "2", "proxy_listen": "tcp:0"}, {}, None)
