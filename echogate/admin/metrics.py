"""
C{GET /metrics} on the Admin API: the Prometheus text exposition of the
prometheus plugin's registry (L{echogate.bundled.prometheus}) and of the
node's own gauges, read at each scrape:

  - C{echogate_connections{node_id, state}}: proxy connections C{active},
    C{accepted}, C{handled}, C{refused}, and C{total} requests;
  - C{echogate_datastore_reachable}: 1 when the database answered within
    the status timeout, else 0;
  - C{echogate_node_info{node_id, version}}: always 1.

The endpoint exists when the prometheus plugin is enabled on the node
(else 404, as in Kong).
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from twisted.internet.defer import maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from echogate.admin.responses import NOT_FOUND, json_response

__all__ = ["NodeCollector", "metrics_response"]

_log = Logger(namespace="echogate.admin")


class NodeCollector:
    """
    A Prometheus collector for the node's gauges, from values read at
    scrape time.
    """

    def __init__(self, node_id: str, version: str, server: Mapping[str, int], reachable: bool):
        self._node_id = node_id
        self._version = version
        self._server = server
        self._reachable = reachable

    def collect(self) -> Iterator[GaugeMetricFamily]:
        connections = GaugeMetricFamily("echogate_connections", "Proxy connections and requests by state",
                                        labels=["node_id", "state"])
        for state, key in (("active", "connections_active"), ("accepted", "connections_accepted"),
                           ("handled", "connections_handled"), ("refused", "connections_refused"),
                           ("total", "total_requests")):
            if key in self._server:
                connections.add_metric([self._node_id, state], self._server[key])
        yield connections
        yield GaugeMetricFamily("echogate_datastore_reachable",
                                "Datastore reachable from the node, 0 is unreachable",
                                value=1 if self._reachable else 0)
        info = GaugeMetricFamily("echogate_node_info", "Node metadata", labels=["node_id", "version"])
        info.add_metric([self._node_id, self._version], 1)
        yield info


async def metrics_response(request: IRequest, *, plugins: Mapping[str, Any], store: Any,
                           status: Callable[[], Mapping[str, Any]] | None, node: Any, clock: IReactorTime,
                           timeout: float) -> bytes:
    """
    Answer C{GET /metrics}.
    """
    plugin = plugins.get("prometheus")
    if plugin is None:
        return json_response(request, NOT_FOUND, 404)
    try:
        await maybeDeferred(store.version).addTimeout(timeout, clock)
        reachable = True
    except Exception as e:
        _log.warn("The database did not answer GET /metrics: {error!r}", error=e)
        reachable = False
    server = dict(status()) if status is not None else {}
    node_registry = CollectorRegistry(auto_describe=False)
    node_registry.register(NodeCollector(node.node_id, node.version, server, reachable))
    body = generate_latest(node_registry) + generate_latest(plugin.metrics.registry)
    request.setResponseCode(200)
    request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
    return body
