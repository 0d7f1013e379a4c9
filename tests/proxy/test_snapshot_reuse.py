"""
A snapshot's plugin and credential indexes taken from the snapshot it
replaces when what they were built from did not change
(L{echogate.proxy.reusing}), and the plugin index built in steps, keeping
the entries of unchanged configs (L{echogate.proxy.plan.PluginIndex.building}).
"""
from __future__ import annotations

from typing import Any

import attrs
from twisted.trial.unittest import SynchronousTestCase

from echogate.pdk.credentials import KEYAUTH
from echogate.proxy import plan as plan_module
from echogate.proxy.plan import PluginIndex
from echogate.proxy.reusing import CHUNK, Sources, kept_records, same_records
from echogate.proxy.snapshot import Snapshot
from echogate.routing.router import finish
from echogate.store.data import ConfigurationData
from tests.proxy.test_runner import make_plugin
from tests.stepping import run_steps

_SERVICE: dict[str, Any] = {"id": "5b1c2f4a-8d0e-4c4e-9c1e-2b7a3d5e6f70", "name": "s", "protocol": "http",
                            "host": "up", "port": 80, "path": None}


def _route(n: int) -> dict[str, Any]:
    return {"id": f"00000000-0000-4000-8000-{n:012d}", "name": f"r{n}", "paths": [f"/r{n}"],
            "service": {"id": _SERVICE["id"]}}


def _plugin(n: int, config: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": f"10000000-0000-4000-8000-{n:012d}", "name": "p", "enabled": True,
            "config": config if config is not None else {"n": n}, "route": {"id": _route(n)["id"]},
            "service": None, "consumer": None}


def _consumer(n: int) -> dict[str, Any]:
    return {"id": f"20000000-0000-4000-8000-{n:012d}", "username": f"u{n}", "custom_id": None}


def _key(n: int, key: str | None = None) -> dict[str, Any]:
    return {"id": f"30000000-0000-4000-8000-{n:012d}", "consumer": {"id": _consumer(n)["id"]},
            "key": key or f"key-{n}"}


def _data(routes: int = 3, **changes: Any) -> ConfigurationData:
    base = ConfigurationData(version=1, services=(_SERVICE,), routes=tuple(_route(n) for n in range(routes)),
                             plugins=tuple(_plugin(n) for n in range(routes)),
                             consumers=tuple(_consumer(n) for n in range(routes)),
                             keyauth_credentials=tuple(_key(n) for n in range(routes)))
    return attrs.evolve(base, **changes)


def noop(kong: Any, config: Any) -> None:
    pass


_PLUGINS = {"p": make_plugin("p", access=noop)}


_run = run_steps


def _build(data: ConfigurationData, previous: Snapshot | None = None,
           plugins: dict[str, Any] = _PLUGINS) -> Snapshot:
    return Snapshot.build(data, plugins, previous)


class SameRecordsTests(SynchronousTestCase):
    def test_sameObjectAtOnce(self) -> None:
        """
        The same table is the same without a step.
        """
        table = tuple(range(5 * CHUNK))
        self.assertIs(finish(same_records(table, table)), True)

    def test_equalNewObjects(self) -> None:
        """
        Equal records that are new objects are the same, compared a chunk
        a step.
        """
        old = tuple({"id": n} for n in range(3 * CHUNK))
        new = tuple({"id": n} for n in range(3 * CHUNK))
        self.assertEqual(_run(same_records(new, old)), (3, True))

    def test_different(self) -> None:
        """
        A changed record, or another count, is a difference.
        """
        old = tuple({"id": n} for n in range(10))
        self.assertIs(finish(same_records(old[:9] + ({"id": 99},), old)), False)
        self.assertIs(finish(same_records(old[:9], old)), False)


class KeptRecordsTests(SynchronousTestCase):
    def test_sameTable(self) -> None:
        """
        The same table keeps all its records, without a step.
        """
        table = tuple(range(3 * CHUNK))
        self.assertEqual(_run(kept_records(table, table)), (0, 3 * CHUNK))

    def test_added(self) -> None:
        """
        A table that begins with all of the old one's records (equal new
        objects) keeps as many, compared a chunk a step.
        """
        old = tuple({"id": n} for n in range(2 * CHUNK + 1))
        new = tuple({"id": n} for n in range(2 * CHUNK + 5))
        self.assertEqual(_run(kept_records(new, old)), (3, 2 * CHUNK + 1))
        self.assertEqual(_run(kept_records(old, tuple(list(old)))), (3, 2 * CHUNK + 1))
        self.assertEqual(finish(kept_records(new, ())), 0)

    def test_notKept(self) -> None:
        """
        A record changed or removed keeps nothing.
        """
        old = tuple({"id": n} for n in range(10))
        self.assertIsNone(finish(kept_records(({"id": 99},) + old[1:] + ({"id": 10},), old)))
        self.assertIsNone(finish(kept_records(old[:9], old)))
        self.assertIsNone(finish(kept_records((), old)))


class ReuseTests(SynchronousTestCase):
    def test_routeAdded(self) -> None:
        """
        With only the routes changed, the next snapshot keeps the plugin
        index's entries (its plans made again) and the credential index
        itself.
        """
        first = _build(_data())
        plan = first.plugins.plan(_route(1)["id"], _SERVICE["id"])
        second = _build(_data(routes=4, plugins=_data().plugins, consumers=_data().consumers,
                              keyauth_credentials=_data().keyauth_credentials), first)
        self.assertIs(second.credentials, first.credentials)
        self.assertIsNot(second.plugins, first.plugins)
        self.assertEqual(second.plugins.entries("p"), first.plugins.entries("p"))
        self.assertIs(second.plugins.entries("p")[0], first.plugins.entries("p")[0])
        again = second.plugins.plan(_route(1)["id"], _SERVICE["id"])
        self.assertIsNot(again, plan)
        self.assertEqual(again.access_steps, plan.access_steps)

    def test_pluginChanged(self) -> None:
        """
        A changed config is indexed anew; the others keep their entries;
        credentials are kept.
        """
        first = _build(_data())
        changed = _data().plugins[:1] + (_plugin(1, {"n": "changed"}),) + _data().plugins[2:]
        second = _build(_data(plugins=changed), first)
        self.assertIs(second.credentials, first.credentials)
        by_id = {e.id: e for e in second.plugins.entries("p")}
        before = {e.id: e for e in first.plugins.entries("p")}
        self.assertEqual(by_id[_plugin(1)["id"]].config["n"], "changed")
        self.assertIsNot(by_id[_plugin(1)["id"]], before[_plugin(1)["id"]])
        self.assertIs(by_id[_plugin(0)["id"]], before[_plugin(0)["id"]])
        self.assertIs(by_id[_plugin(2)["id"]], before[_plugin(2)["id"]])

    def test_keyAdded(self) -> None:
        """
        A new key is in the next snapshot's credential index; the plugin
        index keeps its entries.
        """
        first = _build(_data())
        keys = _data().keyauth_credentials + (_key(0, "another"),)
        second = _build(_data(keyauth_credentials=keys), first)
        self.assertIsNot(second.credentials, first.credentials)
        self.assertIsNotNone(second.credentials.find("key-auth", "another"))
        self.assertIsNone(first.credentials.find("key-auth", "another"))
        self.assertIs(second.plugins.entries("p")[0], first.plugins.entries("p")[0])

    def test_consumerChanged(self) -> None:
        """
        A changed consumer (same id, new username) makes a new credential
        index.
        """
        first = _build(_data())
        consumers = (dict(_consumer(0), username="renamed"),) + _data().consumers[1:]
        second = _build(_data(consumers=consumers), first)
        self.assertIsNot(second.credentials, first.credentials)

    def test_keyAddedKeepsParts(self) -> None:
        """
        A key added at the end: the new credential index takes the
        previous one's consumers as they are, and its keys' records.
        """
        first = _build(_data())
        second = _build(_data(keyauth_credentials=_data().keyauth_credentials + (_key(0, "another"),)), first)
        self.assertIs(second.credentials.consumers, first.credentials.consumers)
        self.assertIs(second.credentials.find("key-auth", "key-1"), first.credentials.find("key-auth", "key-1"))
        self.assertIsNone(first.credentials.find("key-auth", "another"))

    def test_consumerChangedKeepsKeys(self) -> None:
        """
        A consumer changed: the consumers are indexed anew, the keys' part
        is taken as it is.
        """
        first = _build(_data())
        consumers = (dict(_consumer(0), username="renamed"),) + _data().consumers[1:]
        second = _build(_data(consumers=consumers), first)
        self.assertIsNot(second.credentials.consumers, first.credentials.consumers)
        self.assertEqual(second.credentials.consumers.get("renamed")["id"], _consumer(0)["id"])
        self.assertIsNone(second.credentials.consumers.get("u0"))
        self.assertIs(second.credentials._found[KEYAUTH], first.credentials._found[KEYAUTH])

    def test_pluginReloaded(self) -> None:
        """
        A plugin object replaced (C{--dev} reloads it) makes new entries
        and a new credential index (its declared entities may differ).
        """
        first = _build(_data())
        reloaded = {"p": make_plugin("p", access=noop)}
        second = _build(_data(), first, plugins=reloaded)
        self.assertIs(second.plugins.entries("p")[0].plugin, reloaded["p"])
        self.assertIsNot(second.plugins.entries("p")[0], first.plugins.entries("p")[0])
        self.assertIsNot(second.credentials, first.credentials)
        self.assertIs(second.credentials.consumers, first.credentials.consumers)

    def test_missingSettingChanged(self) -> None:
        """
        Another C{missing_plugins} is another plugin index.
        """
        data = _data(plugins=_data().plugins + ({**_plugin(9), "name": "absent"},))
        first = Snapshot.build(data, _PLUGINS, None, "refuse")
        second = Snapshot.build(data, _PLUGINS, first, "skip")
        self.assertEqual((first.plugins.refusing, second.plugins.refusing), (True, False))

    def test_sourcesKeptCopies(self) -> None:
        """
        The sources keep a copy of the plugins mapping: a mapping changed
        in place after a build is not mistaken for the same.
        """
        plugins = dict(_PLUGINS)
        first = _build(_data(), plugins=plugins)
        plugins["p"] = make_plugin("p", access=noop)
        self.assertIs(finish(Sources.of(_data(), plugins, "refuse").same_plugin_index(first.sources)), False)


class SteppedIndexTests(SynchronousTestCase):
    def test_stepsAndSameIndex(self) -> None:
        """
        L{PluginIndex.building} yields once every L{plan_module.STEP}
        records and indexes what the constructor indexes.
        """
        self.patch(plan_module, "STEP", 2)
        records = [_plugin(n) for n in range(7)]
        yielded, built = _run(PluginIndex.building(records, _PLUGINS))
        self.assertEqual(yielded, 3)
        whole = PluginIndex(records, _PLUGINS)
        self.assertEqual(built.entries("p"), whole.entries("p"))
        self.assertEqual(built.plan(_route(3)["id"], _SERVICE["id"]).access_steps,
                         whole.plan(_route(3)["id"], _SERVICE["id"]).access_steps)

    def test_equalRecordsKeepEntries(self) -> None:
        """
        Records equal to the previous index's (new objects, as a store may
        hand over) keep their entries.
        """
        first = PluginIndex([_plugin(n) for n in range(3)], _PLUGINS)
        second = finish(PluginIndex.building([_plugin(n) for n in range(3)], _PLUGINS, previous=first))
        for a, b in zip(first.entries("p"), second.entries("p")):
            self.assertIs(a, b)

    def test_freshForgetsPlans(self) -> None:
        """
        L{PluginIndex.fresh}: the same entries, no plans.
        """
        index = PluginIndex([_plugin(0)], _PLUGINS)
        plan = index.plan(_route(0)["id"], _SERVICE["id"])
        fresh = index.fresh()
        self.assertIs(fresh.entries("p")[0], index.entries("p")[0])
        self.assertIsNot(fresh.plan(_route(0)["id"], _SERVICE["id"]), plan)
        self.assertIs(index.plan(_route(0)["id"], _SERVICE["id"]), plan)
