"""
gRPC services, routes and plugin protocols through the Admin API (see
L{tests.admin.test_admin}): Kong 3's schemas (C{services.lua},
C{routes.lua}, C{routes_subschemas.lua}) and messages.
"""
from __future__ import annotations

from typing import Any

from tests.admin.test_admin import AdminTestCase

CONDITIONAL = "failed conditional validation given value of field 'protocol'"
NO_STRIP = "cannot set 'strip_path' when 'protocols' is 'grpc' or 'grpcs'"
NO_METHODS = "cannot set 'methods' when 'protocols' is 'grpc' or 'grpcs'"


class GrpcTestCase(AdminTestCase):
    """
    Helpers for a refused write.
    """

    def refused(self, path: str, body: dict[str, Any], fields: dict[str, Any], method: str = "POST") -> None:
        """
        C{body} at C{path} is a 400 schema violation with C{fields}, in
        Kong's shape.
        """
        answer = self.error(method, path, 400, json_body=body)
        self.assertEqual((answer["code"], answer["name"], answer["fields"]), (2, "schema violation", fields))


class ServiceTests(GrpcTestCase):
    """
    Services with protocol C{grpc} or C{grpcs}.
    """

    def test_url(self) -> None:
        """
        The C{url} shorthand takes the C{grpc} scheme.
        """
        body = self.ok("POST", "/services", 201, json_body={"url": "grpc://grpc.test:50051"})
        self.assertEqual((body["protocol"], body["host"], body["port"], body["path"]),
                         ("grpc", "grpc.test", 50051, None))

    def test_grpcsPort(self) -> None:
        """
        A C{grpcs} service's port is 443 unless given, like an https one's
        (in the C{url} too).
        """
        given = self.ok("POST", "/services", 201, json_body={"protocol": "grpcs", "host": "a.test"})
        url = self.ok("POST", "/services", 201, json_body={"url": "grpcs://b.test"})
        plain = self.ok("POST", "/services", 201, json_body={"url": "grpc://c.test"})
        self.assertEqual([given["port"], url["port"], plain["port"]], [443, 443, 80])

    def test_form(self) -> None:
        """
        A form body too.
        """
        body = self.ok("POST", "/services", 201, form=[("protocol", "grpc"), ("host", "a.test")])
        self.assertEqual((body["protocol"], body["port"]), ("grpc", 80))

    def test_noPath(self) -> None:
        """
        A gRPC service has no path: Kong's conditional check.
        """
        for url in ("grpc://a.test/x", "grpcs://a.test:8443/"):
            self.refused("/services", {"url": url}, {"path": "value must be null", "@entity": [CONDITIONAL]})

    def test_noPathByPatch(self) -> None:
        """
        Nor can an http service with a path become a gRPC one.
        """
        self.service("s", path="/base")
        self.refused("/services/s", {"protocol": "grpc"},
                     {"path": "value must be null", "@entity": [CONDITIONAL]}, method="PATCH")

    def test_tlsFieldsHttpsAndGrpcs(self) -> None:
        """
        The TLS fields are taken on https and grpcs services (Kong takes them
        on https only; echogate verifies grpcs services by default, so one
        with its own CA needs them), not on grpc ones.
        """
        self.refused("/services", {"url": "grpc://a.test", "tls_verify": True},
                     {"tls_verify": "value must be null", "@entity": [CONDITIONAL]})
        body = self.ok("POST", "/services", 201,
                       json_body={"url": "grpcs://a.test", "tls_verify": False, "tls_verify_depth": 2})
        self.assertEqual((body["tls_verify"], body["tls_verify_depth"]), (False, 2))

    def test_otherProtocol(self) -> None:
        """
        The stream protocols are not echogate's.
        """
        self.refused("/services", {"protocol": "tcp", "host": "a.test"},
                     {"protocol": "expected one of: grpc, grpcs, http, https"})


class RouteTests(GrpcTestCase):
    """
    Routes with protocols C{grpc} and C{grpcs}: Kong's C{grpc} subschema.
    """

    def test_create(self) -> None:
        """
        A gRPC route: C{strip_path} is off by default.
        """
        body = self.ok("POST", "/routes", 201, json_body={"protocols": ["grpc", "grpcs"], "paths": ["/echo.Echo"]})
        self.assertEqual((body["protocols"], body["strip_path"], body["methods"]),
                         (["grpc", "grpcs"], False, None))

    def test_form(self) -> None:
        """
        A form body with one protocol too.
        """
        body = self.ok("POST", "/routes", 201, form=[("protocols", "grpc"), ("hosts", "a.test")])
        self.assertEqual((body["protocols"], body["strip_path"]), (["grpc"], False))

    def test_put(self) -> None:
        """
        PUT fills the same default.
        """
        body = self.ok("PUT", "/routes/r", 200, json_body={"protocols": ["grpcs"], "snis": ["a.test"]})
        self.assertEqual((body["name"], body["strip_path"]), ("r", False))

    def test_stripPath(self) -> None:
        """
        C{strip_path} cannot be set, nor kept by a PATCH that makes an
        http route a gRPC one.
        """
        self.refused("/routes", {"protocols": ["grpc"], "paths": ["/"], "strip_path": True}, {"strip_path": NO_STRIP})
        self.route(None, "r")
        self.refused("/routes/r", {"protocols": ["grpc"]}, {"strip_path": NO_STRIP}, method="PATCH")
        body = self.ok("PATCH", "/routes/r", json_body={"protocols": ["grpc"], "strip_path": False})
        self.assertEqual(body["protocols"], ["grpc"])

    def test_methods(self) -> None:
        """
        C{methods} cannot be set.
        """
        self.refused("/routes", {"protocols": ["grpcs"], "paths": ["/"], "methods": ["POST"]},
                     {"methods": NO_METHODS})

    def test_matcherRequired(self) -> None:
        """
        One of C{hosts}, C{headers}, C{paths} (and C{snis} with grpcs) is
        required; C{methods} does not count.
        """
        self.refused("/routes", {"protocols": ["grpc"]},
                     {"@entity": ["must set one of 'hosts', 'headers', 'paths' when 'protocols' is 'grpc'"]})
        self.refused("/routes", {"protocols": ["grpc", "grpcs"]},
                     {"@entity": ["must set one of 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'grpcs'"]})
        self.refused("/routes", {"protocols": ["grpc"], "methods": ["POST"]}, {
            "methods": NO_METHODS,
            "@entity": ["must set one of 'hosts', 'headers', 'paths' when 'protocols' is 'grpc'"]})
        for fields in ({"hosts": ["a.test"]}, {"headers": {"x-a": ["b"]}}):
            self.ok("POST", "/routes", 201, json_body={"protocols": ["grpc"], **fields})

    def test_snis(self) -> None:
        """
        C{snis} need C{grpcs}; with it, they are enough.
        """
        self.refused("/routes", {"protocols": ["grpc"], "paths": ["/"], "snis": ["a.test"]}, {
            "snis": "length must be 0",
            "@entity": ["'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls' or 'tls_passthrough'"]})
        self.ok("POST", "/routes", 201, json_body={"protocols": ["grpcs"], "snis": ["a.test"]})

    def test_noMixing(self) -> None:
        """
        http and gRPC protocols cannot be mixed: Kong's
        C{mutually_exclusive_subsets}, the families in the order met.
        """
        self.refused("/routes", {"protocols": ["http", "grpc"], "paths": ["/"]},
                     {"protocols": "these sets are mutually exclusive: ('http', 'https'), ('grpc', 'grpcs')"})
        self.refused("/routes", {"protocols": ["grpcs", "https"], "paths": ["/"]},
                     {"protocols": "these sets are mutually exclusive: ('grpc', 'grpcs'), ('http', 'https')"})

    def test_otherProtocol(self) -> None:
        """
        Only the protocols echogate speaks.
        """
        self.refused("/routes", {"protocols": ["grpc", "tcp"], "paths": ["/"]},
                     {"protocols": [None, "expected one of: grpc, grpcs, http, https"]})


class PluginProtocolsTests(GrpcTestCase):
    """
    A plugin's C{protocols}: Kong's C{typedefs.protocols} of the http
    subsystem.
    """

    def test_default(self) -> None:
        """
        By default, all four.
        """
        body = self.ok("POST", "/plugins", 201, json_body={"name": "echo"})
        self.assertEqual(body["protocols"], ["grpc", "grpcs", "http", "https"])

    def test_grpcOnly(self) -> None:
        """
        gRPC only.
        """
        body = self.ok("POST", "/plugins", 201, json_body={"name": "echo", "protocols": ["grpc", "grpcs"]})
        self.assertEqual(body["protocols"], ["grpc", "grpcs"])

    def test_other(self) -> None:
        """
        Not a stream protocol.
        """
        self.refused("/plugins", {"name": "echo", "protocols": ["tcp"]},
                     {"protocols": ["expected one of: grpc, grpcs, http, https"]})
