"""
Tests for the bundled request-termination plugin
(L{echogate.bundled.request_termination}).
"""
from __future__ import annotations

import os
import socket
from typing import Any

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from echogate.bundled.header_echo import HeaderEcho
from echogate.bundled.request_termination import DEFAULT_MESSAGES, RequestTermination
from echogate.entities.writes import prepare_insert
from echogate.errors import SchemaViolation
from echogate.interfaces import IGatewayPlugin
from echogate.testing import ROUTE_ID, SERVICE_ID, GatewayHarness

NAME = "request-termination"


def harness(**config: Any) -> GatewayHarness:
    return GatewayHarness([RequestTermination()], configs=[(NAME, config)])


class RequestTerminationTests(SynchronousTestCase):
    """
    request-termination answers in place of the service.
    """

    def request(self, gateway: GatewayHarness, path: str = "/", method: str = "GET", **kw: Any) -> Any:
        return self.successResultOf(gateway.request(method, path, **kw))

    def test_provides(self) -> None:
        """
        It provides L{IGatewayPlugin} with Kong's name and priority.
        """
        plugin = RequestTermination()
        self.assertTrue(verifyObject(IGatewayPlugin, plugin))
        self.assertEqual((plugin.name, plugin.priority), (NAME, 2))

    def test_default(self) -> None:
        """
        By default: 503 with Kong's message, and the service is not called.
        """
        gateway = harness()
        response = self.request(gateway)
        self.assertEqual(response.status, 503)
        self.assertEqual(response.json(), {"message": "Service unavailable"})
        self.assertEqual(response.header("content-type"), "application/json; charset=utf-8")
        self.assertEqual(gateway.upstream_requests, [])

    def test_defaultMessages(self) -> None:
        """
        Each of Kong's common statuses has its default message.
        """
        for status, message in DEFAULT_MESSAGES.items():
            response = self.request(harness(status_code=status))
            self.assertEqual((response.status, response.json()), (status, {"message": message}),
                             f"row status={status!r} message={message!r}")

    def test_noDefaultMessage(self) -> None:
        """
        A status without a default message answers with an empty body.
        """
        response = self.request(harness(status_code=418))
        self.assertEqual((response.status, response.body), (418, b""))
        self.assertEqual(response.header("content-length"), "0")

    def test_message(self) -> None:
        """
        C{message} replaces the default message.
        """
        response = self.request(harness(status_code=403, message="Go away"))
        self.assertEqual((response.status, response.json()), (403, {"message": "Go away"}))

    def test_body(self) -> None:
        """
        C{body} is sent as given, with C{content_type}.
        """
        response = self.request(harness(status_code=200, body="<h1>Down</h1>", content_type="text/html"))
        self.assertEqual((response.status, response.body), (200, b"<h1>Down</h1>"))
        self.assertEqual(response.header("content-type"), "text/html")

    def test_bodyWithoutContentType(self) -> None:
        """
        A body without a content type is sent without one.
        """
        response = self.request(harness(body="plain é"))
        self.assertEqual(response.body, "plain é".encode())
        self.assertIsNone(response.header("content-type"))

    def test_triggerHeader(self) -> None:
        """
        With C{trigger}, only requests carrying that header are answered;
        the others go to the service.
        """
        gateway = harness(trigger="X-Debug")
        self.assertEqual(self.request(gateway).status, 200)
        self.assertEqual(self.request(gateway, headers={"x-debug": ""}).status, 503)
        self.assertEqual(len(gateway.upstream_requests), 1)

    def test_triggerQuery(self) -> None:
        """
        A query argument of the trigger's name triggers too, with or without a value.
        """
        gateway = harness(trigger="debug")
        self.assertEqual(self.request(gateway, "/?debug").status, 503)
        self.assertEqual(self.request(gateway, "/?debug=1").status, 503)
        self.assertEqual(self.request(gateway, "/?debugging=1").status, 200)

    def test_echo(self) -> None:
        """
        With C{echo}, the answer is a JSON copy of the request.
        """
        gateway = harness(status_code=404, echo=True)
        response = self.request(gateway, "/a/b?x=1&x=2&y=3", "POST",
                                headers={"Content-Type": "application/json", "X-One": "1"}, body=b'{"k": "v"}')
        self.assertEqual(response.status, 404)
        echo = response.json()
        self.assertEqual(echo["message"], "Not found")
        self.assertEqual(echo["echogate"], {"node_id": None, "worker_pid": os.getpid(),
                                            "hostname": socket.gethostname()})
        request = echo["request"]
        self.assertEqual((request["scheme"], request["host"], request["port"], request["method"], request["path"]),
                         ("http", "gateway.test", 8000, "POST", "/a/b"))
        self.assertEqual(request["query"], {"x": ["1", "2"], "y": "3"})
        self.assertEqual(request["headers"]["x-one"], "1")
        self.assertEqual((request["body"], request["raw_body"]), ({"k": "v"}, '{"k": "v"}'))
        self.assertEqual(echo["matched_route"]["id"], ROUTE_ID)
        self.assertEqual(echo["matched_service"]["id"], SERVICE_ID)

    def test_echoNonJsonBody(self) -> None:
        """
        An echoed body that is not JSON appears only as C{raw_body}.
        """
        response = self.request(harness(echo=True), "/", "POST", headers={"Content-Type": "application/json"},
                                body=b"not json")
        self.assertEqual((response.json()["request"]["body"], response.json()["request"]["raw_body"]),
                         (None, "not json"))

    def test_echoWithMessage(self) -> None:
        """
        C{message} is used in the echo.
        """
        response = self.request(harness(echo=True, message="hello"))
        self.assertEqual(response.json()["message"], "hello")
        self.assertIsNone(response.json()["request"]["raw_body"])

    def test_echoWithTrigger(self) -> None:
        """
        C{echo} combines with C{trigger}: only triggered requests are echoed.
        """
        gateway = harness(echo=True, trigger="x-echo")
        self.assertEqual(self.request(gateway).status, 200)
        self.assertIn("request", self.request(gateway, headers={"X-Echo": "1"}).json())

    def test_laterPluginsStillFilter(self) -> None:
        """
        Plugins with a header filter still see the answer (here header-echo
        adds its header).
        """
        gateway = GatewayHarness([RequestTermination(), HeaderEcho()],
                                 configs=[(NAME, {}), ("header-echo", {})])
        response = self.request(gateway, headers={"X-Request-Echo": "v"})
        self.assertEqual((response.status, response.header("x-response-echo")), (503, "v"))


class RequestTerminationSchemaTests(SynchronousTestCase):
    """
    request-termination's config schema.
    """

    schema = RequestTermination.config_schema

    def violation(self, config: dict) -> dict:
        return self.assertRaises(SchemaViolation, self.schema.validate, config).fields

    def test_defaults(self) -> None:
        """
        Kong's defaults.
        """
        self.assertEqual(self.schema.validate({}), {"status_code": 503, "message": None, "content_type": None,
                                                    "body": None, "echo": False, "trigger": None})

    def test_statusCode(self) -> None:
        """
        C{status_code} is an integer from 100 to 599, never null.
        """
        self.assertEqual(self.violation({"status_code": "abcd"}), {"status_code": "expected an integer"})
        self.assertEqual(self.violation({"status_code": None}), {"status_code": "required field missing"})
        for bad in (99, 600):
            self.assertEqual(self.violation({"status_code": bad}),
                             {"status_code": "value should be between 100 and 599"}, f"row bad={bad!r}")

    def test_strings(self) -> None:
        """
        C{message}, C{content_type} and C{body} are strings.
        """
        for field in ("message", "content_type", "body"):
            self.assertEqual(self.violation({field: 1}), {field: "expected a string"}, f"row field={field!r}")

    def test_echo(self) -> None:
        """
        C{echo} is a boolean, never null.
        """
        self.assertEqual(self.violation({"echo": "yes"}), {"echo": "expected a boolean"})
        self.assertEqual(self.violation({"echo": None}), {"echo": "required field missing"})

    def test_trigger(self) -> None:
        """
        C{trigger} is a header name.
        """
        self.assertEqual(self.schema.validate({"trigger": "header_name"})["trigger"], "header_name")
        self.assertEqual(self.violation({"trigger": "a b"}), {"trigger": (
            "bad header name 'a b', allowed characters are A-Z, a-z, 0-9, '_', and '-'")})

    def test_messageWithBody(self) -> None:
        """
        A message cannot be combined with a body or a content type.
        """
        for config in ({"message": "e", "body": "b"}, {"message": "e", "content_type": "text/html", "body": "b"},
                       {"message": "e", "content_type": "text/html"}):
            self.assertEqual(self.violation(config), {"@entity": ["message cannot be used with content_type or body"]},
                             f"row config={config!r}")

    def test_contentTypeWithoutBody(self) -> None:
        """
        A content type needs a body.
        """
        self.assertEqual(self.violation({"content_type": "text/html"}),
                         {"@entity": ["content_type requires a body"]})

    def test_echoWithBody(self) -> None:
        """
        Echo cannot be combined with a body.
        """
        self.assertEqual(self.violation({"echo": True, "body": "b", "content_type": "text/html"}),
                         {"@entity": ["echo cannot be used with content_type and body"]})

    def test_kongShapeInPluginEntity(self) -> None:
        """
        Through the plugin entity (the Admin API), the rule's message is
        the C{config} field's message, as in Kong.
        """
        error = self.assertRaises(SchemaViolation, prepare_insert, "plugins",
                                  {"name": NAME, "config": {"content_type": "text/html"}},
                                  plugins={NAME: RequestTermination()}, now=1700000000, new_id=ROUTE_ID)
        self.assertEqual(error.fields, {"config": "content_type requires a body"})
        self.assertEqual(error.message, "schema violation (config: content_type requires a body)")
