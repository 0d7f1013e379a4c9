"""
Tests for L{echogate.declarative.load}: every entity, nesting, references
by name and id, stable ids, C{_transform} and the older format versions.
"""
from __future__ import annotations

import json
from typing import Any

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from echogate.declarative import ENTITY_ORDER, Declarative, load, load_file
from echogate.declarative.layout import derived_id
from echogate.entities.credentials import verify_password
from echogate.entities.schemas import ENTITIES
from echogate.store.data import ConfigurationData
from tests.certs import make_ca, make_self_signed
from tests.entities.test_entities import PLUGINS

NOW = 1700000000
SERVICE_ID = "3b8a53a5-0bd0-4c8e-9b87-5a5e5e3fd6a1"

_PAIR = make_self_signed(["a.example"])
_CA = make_ca()


def loads(config: dict[str, Any], now: int = NOW) -> Declarative:
    """
    Load C{config} (with format 3.0 unless it says otherwise) as JSON text.
    """
    return load(json.dumps({"_format_version": "3.0", **config}), PLUGINS, now=now)


def one(declarative: Declarative, entity: str) -> dict[str, Any]:
    rows = declarative.records[entity]
    assert len(rows) == 1, rows
    return rows[0]


#: One minimal valid entry of every entity, at top level, referring by name.
EVERY_ENTITY: dict[str, Any] = {
    "certificates": [{"id": "11111111-1111-4111-8111-111111111111", "cert": _PAIR.cert_pem,
                      "key": _PAIR.key_pem}],
    "ca_certificates": [{"cert": _CA.cert_pem}],
    "snis": [{"name": "a.example", "certificate": "11111111-1111-4111-8111-111111111111"}],
    "services": [{"name": "svc", "host": "example.com"}],
    "routes": [{"name": "rt", "service": "svc", "paths": ["/"]}],
    "consumers": [{"username": "alice"}],
    "upstreams": [{"name": "up"}],
    "targets": [{"upstream": "up", "target": "10.0.0.1:8080"}],
    "plugins": [{"name": "header-echo", "route": "rt"}],
    "keyauth_credentials": [{"consumer": "alice", "key": "secret-key"}],
    "basicauth_credentials": [{"consumer": "alice", "username": "al", "password": "pw"}],
    "jwt_secrets": [{"consumer": "alice", "key": "issuer", "secret": "s3cret"}],
    "acls": [{"consumer": "alice", "group": "admins"}],
}


class EntityTests(SynchronousTestCase):
    """
    Every entity type loads at top level, completed as the Admin API would.
    """

    def test_everyEntityListed(self) -> None:
        """
        The file lists every entity echogate has.
        """
        self.assertEqual(set(ENTITY_ORDER), set(ENTITIES))
        self.assertEqual(set(EVERY_ENTITY), set(ENTITIES))

    def test_everyEntity(self) -> None:
        """
        Each entity type gets one complete record with its defaults.
        """
        loaded = loads(EVERY_ENTITY)
        for entity in ENTITY_ORDER:
            with self.subTest(entity=entity):
                record = one(loaded, entity)
                self.assertEqual(set(record), set(ENTITIES[entity].schema.fields) - {"snis"}
                                 if entity == "certificates" else set(ENTITIES[entity].schema.fields))
                self.assertEqual((record["created_at"], record["updated_at"]), (NOW, NOW))
        self.assertEqual(one(loaded, "services")["port"], 80)
        self.assertEqual(one(loaded, "plugins")["config"]["limit"], 10)

    def test_referencesByName(self) -> None:
        """
        A foreign key naming an entity by its name (a consumer by its
        username) becomes C{{"id": ...}} of that entity.
        """
        loaded = loads(EVERY_ENTITY)
        ids = {e: one(loaded, e)["id"] for e in ENTITY_ORDER}
        expected = {
            ("snis", "certificate"): "certificates", ("routes", "service"): "services",
            ("targets", "upstream"): "upstreams", ("plugins", "route"): "routes",
            ("keyauth_credentials", "consumer"): "consumers", ("basicauth_credentials", "consumer"): "consumers",
            ("jwt_secrets", "consumer"): "consumers", ("acls", "consumer"): "consumers",
        }
        for (entity, field), target in expected.items():
            with self.subTest(entity=entity):
                self.assertEqual(one(loaded, entity)[field], {"id": ids[target]})

    def test_referencesById(self) -> None:
        """
        A foreign key may give the id, as a string or as C{{"id": ...}},
        in any case.
        """
        for reference in (SERVICE_ID.upper(), {"id": SERVICE_ID}):
            loaded = loads({"services": [{"id": SERVICE_ID, "host": "h"}],
                            "routes": [{"service": reference, "paths": ["/"]}]})
            self.assertEqual(one(loaded, "routes")["service"], {"id": SERVICE_ID})

    def test_configurationData(self) -> None:
        """
        The records make a L{ConfigurationData} whose version comes from the
        content hash.
        """
        loaded = loads(EVERY_ENTITY)
        data = loaded.configuration_data()
        self.assertIsInstance(data, ConfigurationData)
        self.assertEqual(data.version, int(loaded.config_hash[:15], 16))
        self.assertEqual(data.acls, loaded.records["acls"])
        self.assertEqual(loaded.configuration_data(7).version, 7)


#: (parent entity, nested key, the child's foreign key, a parent, a child)
NESTINGS: list[tuple[str, str, str, dict[str, Any], dict[str, Any]]] = [
    ("services", "routes", "service", {"name": "s", "host": "h"}, {"paths": ["/"]}),
    ("services", "plugins", "service", {"name": "s", "host": "h"}, {"name": "header-echo"}),
    ("consumers", "plugins", "consumer", {"username": "c"}, {"name": "header-echo"}),
    ("consumers", "keyauth_credentials", "consumer", {"username": "c"}, {"key": "k"}),
    ("consumers", "basicauth_credentials", "consumer", {"username": "c"}, {"username": "u", "password": "p"}),
    ("consumers", "jwt_secrets", "consumer", {"username": "c"}, {"key": "k"}),
    ("consumers", "acls", "consumer", {"username": "c"}, {"group": "g"}),
    ("upstreams", "targets", "upstream", {"name": "u"}, {"target": "10.0.0.2"}),
    ("certificates", "snis", "certificate", {"cert": _PAIR.cert_pem, "key": _PAIR.key_pem},
     {"name": "a.example"}),
]


class NestingTests(SynchronousTestCase):
    """
    Entities nested in their parent get the parent's foreign key.
    """

    def test_nesting(self) -> None:
        """
        Each nesting Kong allows gives the child its parent's id.
        """
        for parent, key, field, body, child in NESTINGS:
            with self.subTest(parent=parent, child=key):
                loaded = loads({parent: [{**body, key: [child]}]})
                child_entity = "plugins" if key == "plugins" else key
                self.assertEqual(one(loaded, child_entity)[field], {"id": one(loaded, parent)["id"]})

    def test_pluginOfNestedRoute(self) -> None:
        """
        A plugin under a route under a service is the route's, not the service's.
        """
        loaded = loads({"services": [{"name": "s", "host": "h", "routes": [
            {"name": "r", "paths": ["/"], "plugins": [{"name": "header-echo"}]}]}]})
        plugin = one(loaded, "plugins")
        self.assertEqual((plugin["route"], plugin["service"]), ({"id": one(loaded, "routes")["id"]}, None))

    def test_sniNames(self) -> None:
        """
        A certificate's C{snis} may list plain names, as the Admin API takes them.
        """
        loaded = loads({"certificates": [{"cert": _PAIR.cert_pem, "key": _PAIR.key_pem,
                                          "snis": ["a.example", "b.example"]}]})
        self.assertEqual([s["name"] for s in loaded.records["snis"]], ["a.example", "b.example"])
        self.assertNotIn("snis", one(loaded, "certificates"))


class IdTests(SynchronousTestCase):
    """
    Given ids are kept; others are derived, the same on every load.
    """

    def test_givenKept(self) -> None:
        """
        An id the file gives is kept (lower-cased).
        """
        loaded = loads({"services": [{"id": SERVICE_ID.upper(), "host": "h"}]})
        self.assertEqual(one(loaded, "services")["id"], SERVICE_ID)

    def test_stable(self) -> None:
        """
        The same file loads to the same ids (and hash) at another time.
        """
        config = {**EVERY_ENTITY, "services": [{"host": "unnamed"}, {"name": "svc", "host": "h", "routes": [
            {"paths": ["/x"]}, {"paths": ["/x"]}]}]}
        first, second = loads(config), loads(config, now=NOW + 500)
        for entity in ENTITY_ORDER:
            self.assertEqual([r["id"] for r in first.records[entity]], [r["id"] for r in second.records[entity]])
        self.assertEqual(first.config_hash, second.config_hash)
        ids = [r["id"] for r in first.records["routes"]]
        self.assertEqual(len(set(ids)), len(ids))

    def test_kongScheme(self) -> None:
        """
        A named entity's id is uuid5 over Kong's namespace, its type and its name.
        """
        loaded = loads({"services": [{"name": "foo", "host": "h"}]})
        self.assertEqual(one(loaded, "services")["id"], derived_id("services", "foo"))
        self.assertEqual(derived_id("services", "foo"), "2933fbcc-9d7c-54a7-a984-fe2bde836cea")

    def test_nestedOrNotSameId(self) -> None:
        """
        A plugin has the same id whether nested in its service or naming it.
        """
        nested = loads({"services": [{"name": "s", "host": "h", "plugins": [{"name": "header-echo"}]}]})
        top = loads({"services": [{"name": "s", "host": "h"}],
                     "plugins": [{"name": "header-echo", "service": "s"}]})
        self.assertEqual(one(nested, "plugins")["id"], one(top, "plugins")["id"])


class TransformTests(SynchronousTestCase):
    """
    C{_transform}: basic-auth passwords hashed on load unless false.
    """

    config = {"consumers": [{"username": "c", "basicauth_credentials": [{"username": "u", "password": "pw"}]}]}

    def test_hashed(self) -> None:
        """
        By default a password is stored as its hash, the same on every load.
        """
        first = one(loads(self.config), "basicauth_credentials")["password"]
        self.assertTrue(verify_password(first, "pw"))
        self.assertEqual(first, one(loads(self.config), "basicauth_credentials")["password"])

    def test_notTransformed(self) -> None:
        """
        With C{_transform: false} the value is taken as already hashed.
        """
        loaded = loads({"_transform": False, **self.config})
        self.assertEqual(one(loaded, "basicauth_credentials")["password"], "pw")
        self.assertFalse(loaded.transform)


class FormatVersionTests(SynchronousTestCase):
    """
    C{_format_version} 3.0, and 1.1 and 2.1 as Kong 3 reads them.
    """

    def test_old(self) -> None:
        """
        1.1 and 2.1 load; their regex paths get the C{~} of 3.0.
        """
        for version in ("1.1", "2.1"):
            with self.subTest(version=version):
                loaded = loads({"_format_version": version, "services": [{"host": "h", "routes": [
                    {"paths": ["/v1/(a|b)$", "/plain%7E"]}]}], "routes": [{"paths": ["/x/\\d+"]}]})
                self.assertEqual([r["paths"] for r in loaded.records["routes"]],
                                 [["~/v1/(a|b)$", "/plain~"], ["~/x/\\d+"]])
                self.assertEqual(loaded.format_version, version)

    def test_current(self) -> None:
        """
        3.0 paths are taken as given: no C{~}, no regex.
        """
        loaded = loads({"routes": [{"paths": ["/v1/(a%7Cb)"]}]})
        self.assertEqual(one(loaded, "routes")["paths"], ["/v1/(a%7Cb)"])


class TextTests(SynchronousTestCase):
    """
    YAML and JSON text, bytes or str, and files.
    """

    yaml = b'_format_version: "3.0"\nservices:\n- name: s\n  url: http://example.com:81/p\n'

    def test_yaml(self) -> None:
        """
        YAML bytes load.
        """
        service = one(load(self.yaml, PLUGINS, now=NOW), "services")
        self.assertEqual((service["host"], service["port"], service["path"]), ("example.com", 81, "/p"))

    def test_file(self) -> None:
        """
        L{load_file} reads a file.
        """
        path = FilePath(self.mktemp())
        path.setContent(self.yaml)
        self.assertEqual(one(load_file(path.path, PLUGINS, now=NOW), "services")["name"], "s")
