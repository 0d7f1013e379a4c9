"""
Tests for the redaction of credentials in log records
(L{echogate.bundled.log_record}), through the harness, and in what
file-log writes and http-log sends from a running node, given the
attacker's exact raw request on a real socket.
"""
from __future__ import annotations

import base64
import json
import os
from typing import Any, Mapping

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web import server

from echogate.bundled.file_log import FileLog
from echogate.bundled.http_log import HttpLog
from echogate.bundled.key_auth import KeyAuth
from echogate.bundled.log_record import REDACTED, REDACTION_FIELDS, log_record
from echogate.errors import SchemaViolation
from echogate.plugin import GatewayPlugin
from echogate.schema import Record
from echogate.testing import GatewayHarness, UpstreamAnswer
from tests.bundled.test_http_log import _Collector
from tests.entities.test_credentials import ALICE, people
from tests.gateway import start_gateway
from tests.rawclient import connect, status_of
from tests.upstream_server import start_upstream

KEY = "k3y-0f-alice"
GUESS = "gu3ssed-k3y"
BASIC = base64.b64encode(b"alice:pa55w0rd").decode()


class _Recorder(GatewayPlugin):
    """
    Keeps the log record of every request, built with its config's
    redaction fields.
    """

    name = "recorder"
    version = "1.0.0"
    priority = 1
    config_schema = Record(dict(REDACTION_FIELDS))

    def __init__(self, records: list) -> None:
        object.__setattr__(self, "_records", records)

    def log(self, ctx: Any, config: Mapping[str, Any]) -> None:
        self._records.append(log_record(ctx, 0.0, config["redact_credentials"], config["redact"]))


def _answer(request: Any) -> UpstreamAnswer:
    return UpstreamAnswer(200, {"Set-Cookie": "session=s3ss10n", "X-Secret": "r3sp0nse"}, b"ok")


class LogRecordRedactionTests(SynchronousTestCase):
    """
    What L{log_record} redacts, and the options that change it.
    """

    def record(self, path: str, headers: dict[str, str], key_auth: dict | None = None,
               **recorder: Any) -> dict[str, Any]:
        records: list = []
        plugins: list = [_Recorder(records)]
        configs: list = [("recorder", recorder)]
        if key_auth is not None:
            plugins.append(KeyAuth())
            configs.append(("key-auth", key_auth))
        harness = GatewayHarness(plugins, configs, upstream=_answer, entities=people(
            {"keyauth_credentials": [{"consumer": {"id": ALICE}, "key": KEY}]}))
        self.successResultOf(harness.request("GET", path, headers=headers))
        self.assertEqual(len(records), 1)
        return records[0]

    def assertNowhere(self, record: dict[str, Any], *secrets: str) -> None:
        text = json.dumps(record)
        for secret in secrets:
            self.assertNotIn(secret, text)

    def test_keyNames(self) -> None:
        """
        The key names of the request's key-auth read REDACTED as headers and
        in the query string of uri, url, querystring and upstream_uri.
        """
        record = self.record(f"/x?token={KEY}&keep=1", {"apikey": KEY},
                             key_auth={"key_names": ["apikey", "token"]})
        request = record["request"]
        self.assertEqual(request["headers"]["apikey"], REDACTED)
        self.assertEqual(request["querystring"], {"token": REDACTED, "keep": "1"})
        self.assertEqual(request["uri"], f"/x?token={REDACTED}&keep=1")
        self.assertTrue(request["url"].endswith(f"/x?token={REDACTED}&keep=1"), request["url"])
        self.assertEqual(record["upstream_uri"], f"/x?token={REDACTED}&keep=1")
        self.assertNowhere(record, KEY)

    def test_refusedKey(self) -> None:
        """
        A key that key-auth refused (a guess, or another consumer's key
        with a typo) is redacted too.
        """
        record = self.record(f"/x?apikey={GUESS}", {"APIKey": GUESS}, key_auth={})
        self.assertEqual(record["response"]["status"], 401)
        self.assertEqual(record["request"]["headers"]["apikey"], REDACTED)
        self.assertNowhere(record, GUESS)

    def test_encodedQueryName(self) -> None:
        """
        A key under a percent-encoded name (C{api%6Bey}) is redacted in the
        uri.
        """
        record = self.record(f"/x?api%6Bey={KEY}", {}, key_auth={})
        self.assertEqual(record["request"]["uri"], f"/x?api%6Bey={REDACTED}")
        self.assertNowhere(record, KEY)

    def test_credentialHeaders(self) -> None:
        """
        Authorization, Proxy-Authorization and Cookie, and the response's
        Set-Cookie, read REDACTED.
        """
        record = self.record("/x", {"Authorization": f"Basic {BASIC}", "Proxy-Authorization": f"Basic {BASIC}",
                                    "Cookie": "session=c00k1e"})
        headers = record["request"]["headers"]
        self.assertEqual((headers["authorization"], headers["proxy-authorization"], headers["cookie"]),
                         (REDACTED, REDACTED, REDACTED))
        self.assertEqual(record["response"]["headers"]["set-cookie"], REDACTED)
        self.assertNowhere(record, BASIC, "c00k1e", "s3ss10n")

    def test_extraNames(self) -> None:
        """
        The names in C{redact} (any case) read REDACTED as request and
        response headers and as query arguments.
        """
        record = self.record("/x?x-secret=q&Other=1", {"X-SECRET": "h"}, redact=["X-Secret"])
        self.assertEqual(record["request"]["headers"]["x-secret"], REDACTED)
        self.assertEqual(record["response"]["headers"]["x-secret"], REDACTED)
        self.assertEqual(record["request"]["querystring"], {"x-secret": REDACTED, "Other": "1"})
        self.assertEqual(record["request"]["uri"], f"/x?x-secret={REDACTED}&Other=1")

    def test_optOut(self) -> None:
        """
        With C{redact_credentials} false, credentials and key names are
        logged as sent.
        """
        record = self.record(f"/x?apikey={KEY}", {"Authorization": f"Basic {BASIC}"}, key_auth={},
                             redact_credentials=False)
        self.assertEqual(record["request"]["headers"]["authorization"], f"Basic {BASIC}")
        self.assertEqual(record["request"]["querystring"], {"apikey": KEY})

    def test_optOutKeepsExtraNames(self) -> None:
        """
        With C{redact_credentials} false, the names in C{redact} are still
        redacted.
        """
        record = self.record("/x", {"Authorization": "Bearer t0k3n"}, redact_credentials=False,
                             redact=["authorization"])
        self.assertEqual(record["request"]["headers"]["authorization"], REDACTED)


class RedactionSchemaTests(SynchronousTestCase):
    """
    The redaction fields of file-log and http-log.
    """

    def test_defaults(self) -> None:
        """
        Credentials are redacted by default, with no extra names.
        """
        for plugin, base in ((FileLog(), {"path": "/tmp/x.log"}), (HttpLog(), {"http_endpoint": "http://l.test/"})):
            config = plugin.config_schema.validate(base)
            self.assertEqual((config["redact_credentials"], config["redact"]), (True, []))

    def test_invalid(self) -> None:
        """
        C{redact} is an array of non-empty strings, C{redact_credentials} a
        boolean.
        """
        for plugin, base in ((FileLog(), {"path": "/tmp/x.log"}), (HttpLog(), {"http_endpoint": "http://l.test/"})):
            for field, value in (("redact", "authorization"), ("redact", [""]), ("redact", [1]),
                                 ("redact_credentials", "no")):
                error = self.assertRaises(SchemaViolation, plugin.config_schema.validate, {**base, field: value})
                self.assertIn(field, error.fields)


def _attack() -> bytes:
    """
    The attacker's request: the key in a header and in the query string,
    Basic credentials and a session cookie.
    """
    return (f"GET /logged/x?apikey={KEY}&keep=1 HTTP/1.1\r\nHost: gw.test\r\napikey: {KEY}\r\n"
            f"Authorization: Basic {BASIC}\r\nCookie: session=c00k1e\r\nConnection: close\r\n\r\n").encode()


class _NodeRedactionTests(TestCase):
    """
    A running node with key-auth on route C{/logged} and consumer alice
    with key L{KEY}.
    """

    timeout = 60

    async def setUp(self) -> None:
        _, port = start_upstream(self)
        self.gw = await start_gateway(self)
        await self.admin("POST", "/services", json={"name": "svc", "url": f"http://127.0.0.1:{port}"})
        await self.admin("POST", "/services/svc/routes", json={"name": "r", "paths": ["/logged"]})
        await self.admin("POST", "/routes/r/plugins", json={"name": "key-auth"})
        await self.admin("POST", "/consumers", json={"username": "alice"})
        await self.admin("POST", "/consumers/alice/key-auth", json={"key": KEY})

    async def admin(self, method: str, path: str, **kw: Any) -> Any:
        answer = await self.gw.admin(method, path, **kw)
        self.assertEqual(answer.code, 201, answer.body)
        return answer.json()

    async def attack(self) -> None:
        client = await connect(self.gw.proxy_port)
        self.addCleanup(client.transport.abortConnection)
        client.send(_attack())
        data = await client.response()
        self.assertEqual(status_of(data), 200, data)

    def assertRedacted(self, entry: dict[str, Any]) -> None:
        """
        C{entry} holds no secret of the attack, and says where they were.
        """
        text = json.dumps(entry)
        for secret in (KEY, BASIC, "c00k1e"):
            self.assertNotIn(secret, text)
        self.assertEqual(entry["request"]["uri"], f"/logged/x?apikey={REDACTED}&keep=1")
        self.assertEqual((entry["request"]["headers"]["apikey"], entry["request"]["headers"]["authorization"]),
                         (REDACTED, REDACTED))


class FileLogRedactionTests(_NodeRedactionTests):
    """
    file-log on a route with key-auth writes no credential.
    """

    async def test_noSecretInLine(self) -> None:
        """
        The line for a request with the key in a header and the query
        string, Basic credentials and a cookie holds none of them.
        """
        path = os.path.abspath(self.mktemp())
        await self.admin("POST", "/routes/r/plugins", json={"name": "file-log", "config": {"path": path}})
        await self.attack()
        for _ in range(500):
            if os.path.exists(path) and os.path.getsize(path):
                break
            await deferLater(reactor, 0.02, lambda: None)
        with open(path, "rb") as f:
            (line,) = f.read().splitlines()
        self.assertRedacted(json.loads(line))


class HttpLogRedactionTests(_NodeRedactionTests):
    """
    http-log on a route with key-auth sends no credential.
    """

    async def test_noSecretInEntry(self) -> None:
        """
        The entry for a request with the key in a header and the query
        string, Basic credentials and a cookie holds none of them.
        """
        collector = _Collector()
        site = server.Site(collector)
        site.noisy = False
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        await self.admin("POST", "/routes/r/plugins", json={"name": "http-log", "config": {
            "http_endpoint": f"http://127.0.0.1:{port.getHost().port}/logs",
            "queue": {"max_coalescing_delay": 0.01}}})
        await self.attack()
        for _ in range(500):
            if collector.bodies:
                break
            await deferLater(reactor, 0.02, lambda: None)
        (entry,) = collector.bodies
        self.assertRedacted(entry)
