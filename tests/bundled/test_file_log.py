"""
Tests for the bundled file-log plugin (L{echogate.bundled.file_log}):
its schema, its writer thread, and one line per request in the running
gateway.
"""
from __future__ import annotations

import json
import os
import threading
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import Clock, deferLater
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from echogate.bundled.file_log import FileLog, LineFileWriter
from echogate.errors import SchemaViolation
from echogate.interfaces import IGatewayPlugin
from echogate.testing import GatewayHarness
from tests.gateway import start_gateway
from tests.upstream_server import start_upstream


def _lines(path: str) -> list[dict]:
    with open(path, "rb") as f:
        return [json.loads(line) for line in f.read().splitlines()]


class FileLogSchemaTests(SynchronousTestCase):
    """
    file-log's config: C{path} (required, a plausible file name) and
    C{reopen}.
    """

    def validate(self, config: dict) -> dict:
        return FileLog.config_schema.validate(config)

    def test_defaults(self) -> None:
        """
        reopen defaults to false.
        """
        self.assertEqual(self.validate({"path": "/tmp/x.log"}), {"path": "/tmp/x.log", "reopen": False,
                                                                  "redact_credentials": True, "redact": []})

    def test_pathRequired(self) -> None:
        """
        Without a path: required field missing.
        """
        error = self.assertRaises(SchemaViolation, self.validate, {})
        self.assertEqual(error.fields, {"path": "required field missing"})

    def test_pathInvalid(self) -> None:
        """
        Kong's filename rule: no surrounding spaces, none of * & % \\ `.
        """
        for path in (" /tmp/x", "/tmp/x ", "/tmp/a*b", "/tmp/a&b", "/tmp/50%", "/tmp/`x`", "a\\b"):
            error = self.assertRaises(SchemaViolation, self.validate, {"path": path})
            self.assertEqual(error.fields, {"path": "not a valid filename"}, path)

    def test_pathType(self) -> None:
        """
        A path is a string.
        """
        error = self.assertRaises(SchemaViolation, self.validate, {"path": 3})
        self.assertEqual(error.fields, {"path": "expected a string"})

    def test_reopenType(self) -> None:
        """
        reopen is a boolean.
        """
        error = self.assertRaises(SchemaViolation, self.validate, {"path": "/tmp/x", "reopen": "yes"})
        self.assertEqual(error.fields, {"reopen": "expected a boolean"})

    def test_unknownField(self) -> None:
        """
        Unknown fields are refused (Kong's custom_fields_by_lua has no
        equivalent).
        """
        error = self.assertRaises(SchemaViolation, self.validate,
                                  {"path": "/tmp/x", "custom_fields_by_lua": {}})
        self.assertEqual(error.fields, {"custom_fields_by_lua": "unknown field"})


class FileLogTests(SynchronousTestCase):
    """
    Through L{GatewayHarness}: one JSON line per request in the file.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.writer = LineFileWriter()
        self.addCleanup(self.writer.stop)
        self.plugin = FileLog(clock=self.clock, writer=self.writer)
        self.path = os.path.join(self.mktemp())
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)

    def harness(self, **config: Any) -> GatewayHarness:
        return GatewayHarness([self.plugin], configs=[("file-log", {"path": self.path, **config})],
                              clock=self.clock)

    def test_provides(self) -> None:
        """
        It provides L{IGatewayPlugin} with Kong's name and priority.
        """
        self.assertTrue(verifyObject(IGatewayPlugin, self.plugin))
        self.assertEqual((self.plugin.name, self.plugin.priority), ("file-log", 9))

    def test_oneLinePerRequest(self) -> None:
        """
        Each request appends one JSON line in Kong's log shape.
        """
        harness = self.harness()
        self.successResultOf(harness.request("GET", "/one?x=1"))
        self.successResultOf(harness.request("POST", "/two", body=b"{}"))
        self.writer.stop()
        lines = _lines(self.path)
        self.assertEqual([(r["request"]["method"], r["request"]["uri"], r["response"]["status"])
                          for r in lines], [("GET", "/one?x=1", 200), ("POST", "/two", 200)])
        self.assertEqual(set(lines[0]), {"request", "upstream_uri", "upstream_status", "response", "latencies",
                                         "tries", "authenticated_entity", "route", "service", "consumer",
                                         "client_ip", "started_at", "source"})

    def test_appends(self) -> None:
        """
        An existing file is appended to, never truncated.
        """
        with open(self.path, "wb") as f:
            f.write(b'{"old": true}\n')
        self.successResultOf(self.harness().request("GET", "/"))
        self.writer.stop()
        self.assertEqual(len(_lines(self.path)), 2)

    def test_reopen(self) -> None:
        """
        With reopen, a file moved away (rotated) is created again for the
        next request.
        """
        harness = self.harness(reopen=True)
        self.successResultOf(harness.request("GET", "/first"))
        self.writer.stop()
        os.rename(self.path, self.path + ".1")
        self.successResultOf(harness.request("GET", "/second"))
        self.writer.stop()
        self.assertEqual([r["request"]["uri"] for r in _lines(self.path)], ["/second"])
        self.assertEqual([r["request"]["uri"] for r in _lines(self.path + ".1")], ["/first"])

    def test_keepsFileOpenWithoutReopen(self) -> None:
        """
        Without reopen, the open file keeps receiving lines until
        L{LineFileWriter.reopen} is called.
        """
        harness = self.harness()
        self.successResultOf(harness.request("GET", "/first"))
        self.writer.flush()
        os.rename(self.path, self.path + ".1")
        self.successResultOf(harness.request("GET", "/second"))
        self.writer.flush()
        self.assertFalse(os.path.exists(self.path))
        self.writer.reopen()
        self.successResultOf(harness.request("GET", "/third"))
        self.writer.stop()
        self.assertEqual([r["request"]["uri"] for r in _lines(self.path + ".1")], ["/first", "/second"])
        self.assertEqual([r["request"]["uri"] for r in _lines(self.path)], ["/third"])

    def test_unwritable(self) -> None:
        """
        A file that cannot be opened drops the lines with one error line;
        requests are answered as usual.
        """
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.path = os.path.join(self.mktemp(), "missing-dir", "x.log")
        harness = self.harness()
        for _ in range(3):
            self.assertEqual(self.successResultOf(harness.request("GET", "/")).status, 200)
        self.writer.stop()
        self.assertEqual(self.writer.dropped, 3)
        errors = [e for e in events if "cannot write to" in e.get("log_format", "")]
        self.assertEqual(len(errors), 1)
        self.assertEqual(errors[0]["path"], self.path)


class LineFileWriterTests(SynchronousTestCase):
    """
    L{LineFileWriter} writes from its own thread and never blocks its caller.
    """

    def test_full(self) -> None:
        """
        Lines beyond C{max_pending} are dropped and counted, not waited for.
        """
        writer = LineFileWriter(max_pending=2)
        gate = threading.Event()
        original = writer._write

        def slow(lines: Any, reopen: Any) -> None:
            gate.wait(10)
            original(lines, reopen)

        writer._write = slow  # type: ignore[method-assign]
        path = self.mktemp()
        writer.append(path, b"1\n")
        while not writer._queue.empty():  # the thread took the first line and waits
            gate.wait(0.001)
        for n in range(2, 6):
            writer.append(path, b"%d\n" % n)
        self.assertEqual(writer.dropped, 2)
        gate.set()
        writer.stop()
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"1\n2\n3\n")

    def test_stopWritesQueued(self) -> None:
        """
        L{LineFileWriter.stop} writes every queued line before returning,
        and the writer starts again on the next line.
        """
        writer = LineFileWriter()
        path = self.mktemp()
        for n in range(100):
            writer.append(path, b"%d\n" % n)
        writer.stop()
        with open(path, "rb") as f:
            self.assertEqual(len(f.read().splitlines()), 100)
        writer.append(path, b"again\n")
        writer.stop()
        with open(path, "rb") as f:
            self.assertEqual(f.read().splitlines()[-1], b"again")

    def test_stopIdle(self) -> None:
        """
        Stopping a writer that never wrote does nothing.
        """
        LineFileWriter().stop()


class FileLogGatewayTests(TestCase):
    """
    file-log configured through the Admin API of a running gateway.
    """

    timeout = 60

    async def test_endToEnd(self) -> None:
        """
        Requests through the proxy land in the file, one JSON line each, with
        the route and service the gateway matched.
        """
        upstream, port = start_upstream(self)
        gw = await start_gateway(self)
        path = os.path.abspath(self.mktemp())
        answer = await gw.admin("POST", "/services", json={"name": "svc", "url": f"http://127.0.0.1:{port}"})
        self.assertEqual(answer.code, 201, answer.body)
        answer = await gw.admin("POST", "/services/svc/routes", json={"name": "r", "paths": ["/logged"]})
        self.assertEqual(answer.code, 201, answer.body)
        answer = await gw.admin("POST", "/services/svc/plugins", data={"name": "file-log", "config.path": path})
        self.assertEqual(answer.code, 201, answer.body)
        self.assertEqual(answer.json()["config"], {"path": path, "reopen": False,
                                                        "redact_credentials": True, "redact": []})
        for n in range(3):
            self.assertEqual((await gw.proxy("GET", f"/logged/{n}")).code, 200, f"row n={n!r}")
        self.assertEqual((await gw.proxy("GET", "/elsewhere")).code, 404)
        for _ in range(200):
            if os.path.exists(path) and len(_lines(path)) >= 3:
                break
            await deferLater(reactor, 0.02, lambda: None)
        lines = _lines(path)
        self.assertEqual([r["request"]["uri"] for r in lines], ["/logged/0", "/logged/1", "/logged/2"])
        self.assertEqual({r["route"]["name"] for r in lines}, {"r"})
        self.assertEqual({r["service"]["name"] for r in lines}, {"svc"})
        self.assertEqual({r["upstream_uri"] for r in lines}, {"/0", "/1", "/2"})
        self.assertEqual({r["client_ip"] for r in lines}, {"127.0.0.1"})
