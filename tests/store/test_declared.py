"""
L{DeclaredStore}, a DB-less node's store: the read parts of the store
contract (L{StoreContractMixin}) answered from replaced records, writes
refused as Kong refuses them without a database.
"""
from __future__ import annotations

import uuid
from typing import Any, Mapping

from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from echogate.interfaces import IStore
from echogate.store.declared import DeclaredStore, OperationUnsupported
from echogate.testing import MemoryStore
from tests.store.test_contract import StoreContractMixin
from tests.store.test_postgres import service


class _Seeded:
    """
    A L{DeclaredStore} whose inserts (for setting up the contract's read
    tests) replace its whole content with what a L{MemoryStore} holds
    after the same insert; every read is the L{DeclaredStore}'s.
    """

    def __init__(self) -> None:
        self.declared = DeclaredStore()
        self._source = MemoryStore()

    def insert(self, entity: str, record: Mapping[str, Any]) -> Deferred[dict[str, Any]]:
        def replace(stored: dict[str, Any]) -> dict[str, Any]:
            self.declared.replace({name: list(rows.values()) for name, rows in self._source.tables.items()},
                                  "hash")
            return stored

        return self._source.insert(entity, record).addCallback(replace)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.declared, name)


class DeclaredStoreReadContractTests(TestCase):
    """
    L{DeclaredStore} reads as the other stores do: the read tests of
    L{StoreContractMixin} (its write tests are L{DeclaredStoreTests}').
    """

    def setUp(self) -> None:
        self.store = _Seeded()

    def test_provides(self) -> None:
        """
        L{DeclaredStore} provides L{IStore}.
        """
        self.assertTrue(verifyObject(IStore, DeclaredStore()))

    failure = StoreContractMixin.failure
    tagged_records = StoreContractMixin.tagged_records
    every_page = StoreContractMixin.every_page
    test_insert_get = StoreContractMixin.test_insert_get
    test_page = StoreContractMixin.test_page
    test_page_tags_where = StoreContractMixin.test_page_tags_where
    test_tagged = StoreContractMixin.test_tagged
    test_tagged_pages = StoreContractMixin.test_tagged_pages
    test_tagged_bad_arguments = StoreContractMixin.test_tagged_bad_arguments
    test_version_load = StoreContractMixin.test_version_load


class DeclaredStoreTests(TestCase):
    """
    Replacing the content, and the writes of L{DeclaredStore}.
    """

    def test_replace(self) -> None:
        """
        L{DeclaredStore.replace} swaps every record at once, increases the
        version, keeps the hash and tells subscribers.
        """
        store = DeclaredStore()
        heard: list[int | None] = []
        store.subscribe(heard.append)
        first, second = service("a"), service("b")
        self.assertEqual(store.replace({"services": [first]}, "h1"), 1)
        self.assertEqual(store.replace({"services": [second]}, "h2"), 2)
        data = self.successResultOf(store.load())
        self.assertEqual((data.version, data.services), (2, (second,)))
        self.assertEqual(self.successResultOf(store.version()), 2)
        self.assertEqual((store.config_hash, heard), ("h2", [1, 2]))

    def test_writesRefused(self) -> None:
        """
        Every write of a declared entity fails with L{OperationUnsupported}
        (405, code 12) in Kong's words, and changes nothing.
        """
        store = DeclaredStore()
        existing = service("a")
        store.replace({"services": [existing]}, "h")
        cases = [
            (store.insert("services", service("b")), "create"),
            (store.update("services", existing), "update"),
            (store.upsert("services", existing), "create or update"),
            (store.delete("services", existing["id"]), "remove"),
            (store.write([("insert", "services", service("c"))]), "create"),
        ]
        for d, verb in cases:
            error = self.failureResultOf(d, OperationUnsupported).value
            self.assertEqual(error.status, 405)
            self.assertEqual(error.body(), {
                "code": 12, "name": "operation unsupported",
                "message": f"cannot {verb} 'services' entities when not using a database"})
        self.assertEqual(self.successResultOf(store.version()), 1)

    def test_healthOverrides(self) -> None:
        """
        The health of targets (set through the Admin API) is written in
        memory, with a new version, and dropped by the next replace.
        """
        store = DeclaredStore()
        upstream = {"id": str(uuid.uuid4()), "name": "u"}
        target = {"id": str(uuid.uuid4()), "upstream": {"id": upstream["id"]}, "target": "10.0.0.1:80"}
        store.replace({"upstreams": [upstream], "targets": [target]}, "h")
        override = {"id": str(uuid.uuid4()), "upstream": {"id": upstream["id"]},
                    "target": {"id": target["id"]}, "address": "10.0.0.1:80", "healthy": False}
        self.successResultOf(store.upsert("target_health_overrides", override))
        data = self.successResultOf(store.load())
        self.assertEqual((data.version, data.target_health_overrides), (2, (override,)))
        store.replace({"upstreams": [upstream], "targets": [target]}, "h")
        self.assertEqual(self.successResultOf(store.load()).target_health_overrides, ())

