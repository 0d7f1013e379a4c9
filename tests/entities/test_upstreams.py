"""
Tests for L{echogate.entities.upstreams}: the upstream and target schemas
with Kong 3's defaults, checks and messages, the C{algorithm}/C{hash_on}
shorthands and target normalisation, through L{echogate.entities.writes}.
"""
from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from echogate.entities import writes
from echogate.entities.upstreams import format_target, normalize_ip
from echogate.errors import SchemaViolation

NOW = 1700000000
ID = "00000000-0000-4000-8000-000000000001"
UPSTREAM = {"id": "00000000-0000-4000-8000-000000000009"}
CONDITIONAL = "failed conditional validation given value of field '{}'"


def insert(entity: str, body: dict[str, Any]) -> dict[str, Any]:
    return writes.prepare_insert(entity, body, plugins={}, now=NOW, new_id=ID)


class UpstreamDefaultsTests(SynchronousTestCase):
    """
    A new upstream has every Kong field, with Kong's defaults.
    """

    def test_defaults(self) -> None:
        """
        Only a name given: Kong 3's defaults everywhere.
        """
        record = insert("upstreams", {"name": "svc.test"})
        self.assertEqual({k: v for k, v in record.items() if k != "healthchecks"}, {
            "id": ID, "created_at": NOW, "updated_at": NOW, "name": "svc.test",
            "algorithm": "round-robin", "hash_on": "none", "hash_fallback": "none",
            "hash_on_header": None, "hash_fallback_header": None, "hash_on_cookie": None,
            "hash_on_cookie_path": "/", "hash_on_query_arg": None, "hash_fallback_query_arg": None,
            "hash_on_uri_capture": None, "hash_fallback_uri_capture": None, "slots": 10000,
            "tags": None, "host_header": None, "client_certificate": None, "use_srv_name": False,
        })

    def test_healthcheckDefaults(self) -> None:
        """
        The nested health check record is filled with Kong's defaults.
        """
        checks = insert("upstreams", {"name": "svc.test"})["healthchecks"]
        self.assertEqual(checks["threshold"], 0)
        self.assertEqual(checks["active"], {
            "type": "http", "timeout": 1, "concurrency": 10, "http_path": "/", "https_sni": None,
            "https_verify_certificate": True, "headers": None,
            "healthy": {"interval": 0, "http_statuses": [200, 302], "successes": 0},
            "unhealthy": {"interval": 0, "http_statuses": [429, 404, 500, 501, 502, 503, 504, 505],
                          "tcp_failures": 0, "timeouts": 0, "http_failures": 0},
        })
        self.assertEqual(checks["passive"], {
            "type": "http",
            "healthy": {"http_statuses": [200, 201, 202, 203, 204, 205, 206, 207, 208, 226,
                                          300, 301, 302, 303, 304, 305, 306, 307, 308],
                        "successes": 0},
            "unhealthy": {"http_statuses": [429, 500, 503], "tcp_failures": 0, "timeouts": 0,
                          "http_failures": 0},
        })

    def test_nestedPatchMerges(self) -> None:
        """
        A PATCH of one health check field keeps the others.
        """
        record = insert("upstreams", {"name": "svc.test"})
        patched = writes.prepare_update("upstreams", record,
                                        {"healthchecks": {"active": {"healthy": {"interval": 5}}}},
                                        plugins={}, now=NOW + 1)
        self.assertEqual(patched["healthchecks"]["active"]["healthy"],
                         {"interval": 5, "http_statuses": [200, 302], "successes": 0})
        self.assertEqual(patched["healthchecks"]["active"]["timeout"], 1)


class UpstreamValidationTests(SynchronousTestCase):
    """
    Every invalid upstream is refused with Kong's message.
    """

    def fields(self, body: dict[str, Any]) -> Any:
        with self.assertRaises(SchemaViolation) as caught:
            insert("upstreams", {"name": "svc.test", **body})
        return caught.exception.fields

    def test_name(self) -> None:
        """
        The name is a host name without port; its message repeats it.
        """
        for name, why in [("1.2.3.4", "no ip addresses allowed"), ("::1", "no ip addresses allowed"),
                          ("a.test:80", "no port allowed"), ("a b", "must be a valid hostname"),
                          ("a.test:99999", "must be a valid hostname")]:
            self.assertEqual(self.fields({"name": name}), {"name": f"Invalid name ('{name}'); {why}"})
        self.assertEqual(self.fields({"name": None}), {"name": "required field missing"})

    def test_enumerations(self) -> None:
        """
        algorithm, hash_on and hash_fallback take Kong's values only.
        """
        self.assertEqual(self.fields({"algorithm": "random"}), {
            "algorithm": "expected one of: consistent-hashing, least-connections, round-robin, latency"})
        self.assertEqual(self.fields({"hash_on": "body"}), {
            "hash_on": "expected one of: none, consumer, ip, header, cookie, path, query_arg, uri_capture"})

    def test_bounds(self) -> None:
        """
        slots, weights and health check numbers have Kong's bounds.
        """
        self.assertEqual(self.fields({"slots": 9}), {"slots": "value should be between 10 and 65536"})
        self.assertEqual(self.fields({"healthchecks": {"active": {"concurrency": 0}}}),
                         {"healthchecks": {"active": {"concurrency": "value should be between 1 and 2147483648"}}})
        self.assertEqual(self.fields({"healthchecks": {"passive": {"unhealthy": {"timeouts": 256}}}}),
                         {"healthchecks": {"passive": {"unhealthy": {
                             "timeouts": "value should be between 0 and 255"}}}})
        self.assertEqual(self.fields({"healthchecks": {"threshold": 101}}),
                         {"healthchecks": {"threshold": "value should be between 0 and 100"}})
        self.assertEqual(self.fields({"healthchecks": {"active": {"type": "udp"}}}),
                         {"healthchecks": {"active": {"type": "expected one of: tcp, http, https, grpc, grpcs"}}})

    def test_strings(self) -> None:
        """
        Header and cookie names, paths, SNI and host_header are checked as Kong's typedefs.
        """
        self.assertEqual(self.fields({"hash_on_header": "a b"}), {
            "hash_on_header": "bad header name 'a b', allowed characters are A-Z, a-z, 0-9, '_', and '-'"})
        self.assertIn("contains one or more invalid characters",
                      self.fields({"hash_on_cookie": "a=b"})["hash_on_cookie"])
        self.assertEqual(self.fields({"hash_on_cookie_path": "x"}), {"hash_on_cookie_path": "should start with: /"})
        self.assertEqual(self.fields({"healthchecks": {"active": {"https_sni": "1.2.3.4"}}}),
                         {"healthchecks": {"active": {"https_sni": "must not be an IP"}}})
        self.assertEqual(self.fields({"host_header": "a b"}), {"host_header": "invalid hostname: a b"})
        self.assertEqual(self.fields({"hash_on_query_arg": ""}), {"hash_on_query_arg": "length must be at least 1"})

    def test_clientCertificate(self) -> None:
        """
        client_certificate accepts only null (there are no certificates).
        """
        self.assertEqual(self.fields({"client_certificate": UPSTREAM}), {"client_certificate": "value must be null"})

    def test_requiredByHashOn(self) -> None:
        """
        Hashing on a header, cookie, query argument or URI capture needs its name.
        """
        for hash_on, needed in [("header", "hash_on_header"), ("cookie", "hash_on_cookie"),
                                ("query_arg", "hash_on_query_arg"), ("uri_capture", "hash_on_uri_capture")]:
            self.assertEqual(self.fields({"hash_on": hash_on}), {
                needed: "required field missing", "@entity": [CONDITIONAL.format("hash_on")]})

    def test_requiredByHashFallback(self) -> None:
        """
        Falling back on a header, cookie, query argument or URI capture needs its name.
        """
        for fallback, needed in [("header", "hash_fallback_header"), ("cookie", "hash_on_cookie"),
                                 ("query_arg", "hash_fallback_query_arg"),
                                 ("uri_capture", "hash_fallback_uri_capture")]:
            self.assertEqual(self.fields({"hash_on": "consumer", "hash_fallback": fallback}), {
                needed: "required field missing", "@entity": [CONDITIONAL.format("hash_fallback")]})

    def test_fallbackAllowed(self) -> None:
        """
        hash_fallback must be none with hash_on none or cookie, and differ from hash_on.
        """
        self.assertEqual(self.fields({"hash_on": "cookie", "hash_on_cookie": "c", "hash_fallback": "ip"}), {
            "hash_fallback": "expected one of: none", "@entity": [CONDITIONAL.format("hash_on")]})
        for hash_on in ("consumer", "ip", "path"):
            fields = self.fields({"hash_on": hash_on, "hash_fallback": hash_on})
            self.assertEqual(fields["@entity"], [CONDITIONAL.format("hash_on")])
            self.assertNotIn(hash_on, fields["hash_fallback"].split(": ")[1].split(", "))

    def test_noneFallback(self) -> None:
        """
        hash_on none (with round-robin) allows only the none fallback.
        """
        self.assertEqual(self.fields({"hash_fallback": "ip"}), {
            "hash_fallback": "expected one of: none", "@entity": [CONDITIONAL.format("hash_on")]})

    def test_distinct(self) -> None:
        """
        The hash_on and hash_fallback header, query argument and URI capture names differ.
        """
        for on, fallback, kind in [("hash_on_header", "hash_fallback_header", "header"),
                                   ("hash_on_query_arg", "hash_fallback_query_arg", "query_arg"),
                                   ("hash_on_uri_capture", "hash_fallback_uri_capture", "uri_capture")]:
            self.assertEqual(self.fields({"hash_on": kind, "hash_fallback": kind, on: "x", fallback: "x"}), {
                "@entity": [f"values of these fields must be distinct: '{on}', '{fallback}'"]})


class ShorthandTests(SynchronousTestCase):
    """
    algorithm and hash_on adjust each other, as Kong's shorthand fields do.
    """

    def pair(self, body: dict[str, Any]) -> tuple[str, str]:
        record = insert("upstreams", {"name": "svc.test", **body})
        return record["algorithm"], record["hash_on"]

    def test_hashOnSelectsConsistentHashing(self) -> None:
        """
        A hash_on other than none makes the algorithm consistent-hashing.
        """
        self.assertEqual(self.pair({"hash_on": "ip"}), ("consistent-hashing", "ip"))
        self.assertEqual(self.pair({"algorithm": "round-robin", "hash_on": "ip"}), ("consistent-hashing", "ip"))

    def test_hashOnNoneSelectsRoundRobin(self) -> None:
        """
        hash_on none makes the algorithm round-robin.
        """
        self.assertEqual(self.pair({"algorithm": "consistent-hashing", "hash_on": "none"}), ("round-robin", "none"))

    def test_leastConnectionsResetsHashOn(self) -> None:
        """
        least-connections and latency reset hash_on to none.
        """
        for algorithm in ("least-connections", "latency"):
            self.assertEqual(self.pair({"algorithm": algorithm, "hash_on": "ip"}), (algorithm, "none"))

    def test_patch(self) -> None:
        """
        A PATCH of hash_on alone changes the algorithm too.
        """
        record = insert("upstreams", {"name": "svc.test"})
        patched = writes.prepare_update("upstreams", record, {"hash_on": "consumer"}, plugins={}, now=NOW)
        self.assertEqual((patched["algorithm"], patched["hash_on"]), ("consistent-hashing", "consumer"))


class TargetTests(SynchronousTestCase):
    """
    Targets: defaults, normalisation and Kong's messages.
    """

    def test_defaults(self) -> None:
        """
        weight 100, the port 8000 added.
        """
        self.assertEqual(insert("targets", {"upstream": UPSTREAM, "target": "10.0.0.1"}), {
            "id": ID, "created_at": NOW, "updated_at": NOW, "upstream": UPSTREAM,
            "target": "10.0.0.1:8000", "weight": 100, "tags": None})

    def test_normalised(self) -> None:
        """
        IPv4 loses leading zeros, IPv6 is expanded in brackets, names keep their case.
        """
        for given, stored in [("001.002.003.004:5", "1.2.3.4:5"),
                              ("::1", "[0000:0000:0000:0000:0000:0000:0000:0001]:8000"),
                              ("[FE80::1]:80", "[fe80:0000:0000:0000:0000:0000:0000:0001]:80"),
                              ("Example.test", "Example.test:8000"), ("a.test:1", "a.test:1")]:
            self.assertEqual(format_target(given), stored)
            self.assertEqual(insert("targets", {"upstream": UPSTREAM, "target": given})["target"], stored)

    def test_invalidOnCreate(self) -> None:
        """
        A new target that is no address: the targets DAO's message.
        """
        for bad in ("a b", "300.1.1.1", "[::1]x", "a.test:70000"):
            with self.assertRaises(SchemaViolation) as caught:
                insert("targets", {"upstream": UPSTREAM, "target": bad})
            self.assertEqual(caught.exception.fields,
                             {"target": "Invalid target; not a valid hostname or ip address"})

    def test_invalidOnUpdate(self) -> None:
        """
        A changed target that is no address: the schema's message, naming it.
        """
        record = insert("targets", {"upstream": UPSTREAM, "target": "a.test"})
        with self.assertRaises(SchemaViolation) as caught:
            writes.prepare_update("targets", record, {"target": "a b"}, plugins={}, now=NOW)
        self.assertEqual(caught.exception.fields,
                         {"target": "Invalid target ('a b'); not a valid hostname or ip address"})

    def test_requiredAndBounds(self) -> None:
        """
        upstream and target are required; weight is 0 to 65535.
        """
        with self.assertRaises(SchemaViolation) as caught:
            insert("targets", {"weight": 65536})
        self.assertEqual(caught.exception.fields, {
            "upstream": "required field missing", "target": "required field missing",
            "weight": "value should be between 0 and 65535"})

    def test_normalizeIp(self) -> None:
        """
        normalize_ip tells names from addresses and keeps the port.
        """
        self.assertEqual(normalize_ip("a.test:80"), ("name", "a.test", 80))
        self.assertEqual(normalize_ip("10.0.0.1"), ("ipv4", "10.0.0.1", None))
        self.assertEqual(normalize_ip("[::]:1"), ("ipv6", "0000:0000:0000:0000:0000:0000:0000:0000", 1))
