"""
echogate as a benchmark contender: one node (C{twistd -n echogate}) on
a PostgreSQL database of its own, configured through its Admin API the
way a user does it.
"""
from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Sequence
from urllib.parse import urlencode

from bench.nginx import PATHS, SMALL_BODY
from bench.processes import BenchError, Process

__all__ = ["AdminClient", "BACKLOG", "EchogateNode", "PLUGIN_SETTINGS", "ECHO_HEADER", "fetch"]

#: The listen backlog of every server in the benchmark: nginx's default,
#: and echogate's own when its endpoint does not say C{backlog=}.
#: (Twisted's default, 50, makes 500 clients connecting at once wait for
#: SYN retransmissions: seconds of p99 that measure the backlog, not the
#: data path.)
BACKLOG = 511

#: The header every benchmark request carries, so that header-echo has
#: something to echo.
ECHO_HEADER = ("X-Request-Echo", "bench")

#: Settings that let every benchmark request through, for bundled plugins
#: that need some; a plugin not listed is tried with its defaults. The
#: plugins are tried in this order, then the rest by name.
PLUGIN_SETTINGS: dict[str, list[tuple[str, str]]] = {
    "header-echo": [],
    "correlation-id": [],
    "request-transformer": [("config.add.headers[]", "x-bench:1")],
    "response-transformer": [("config.add.headers[]", "x-bench:1")],
    "rate-limiting": [("config.second", "1000000000"), ("config.policy", "local")],
    "request-size-limiting": [("config.allowed_payload_size", "128")],
    "ip-restriction": [("config.allow[]", "127.0.0.1")],
    "cors": [("config.origins[]", "*")],
}

_LISTENING = re.compile(r"echogate \S+ (proxy|admin) listening on IPv4Address\(type='TCP', "
                        r"host='127\.0\.0\.1', port=(\d+)\)")


class AdminClient:
    """
    A small, blocking Admin API client (form-encoded writes, JSON
    answers), with one keep-alive connection per thread.
    """

    def __init__(self, port: int):
        self.port = port
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = http.client.HTTPConnection("127.0.0.1", self.port,
                                                                             timeout=60)
        return connection

    def call(self, method: str, path: str, fields: Sequence[tuple[str, str]] = ()) -> Any:
        """
        One Admin API call; the decoded JSON answer (C{None} for 204).

        @raise BenchError: any answer but 2xx.
        """
        body = urlencode(list(fields)).encode() if fields else None
        return self._send(method, path, body, "application/x-www-form-urlencoded", list(fields))

    def call_json(self, method: str, path: str, document: Any) -> Any:
        """
        One Admin API call with C{document} as its JSON body; the decoded
        JSON answer (C{None} for 204).

        @raise BenchError: any answer but 2xx.
        """
        return self._send(method, path, json.dumps(document).encode(), "application/json", document)

    def _send(self, method: str, path: str, body: bytes | None, content_type: str, what: Any) -> Any:
        headers = {"Content-Type": content_type} if body else {}
        for attempt in (1, 2):
            connection = self._connection()
            try:
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                break
            except (OSError, http.client.HTTPException):
                connection.close()
                self._local.connection = None
                if attempt == 2:
                    raise
        if response.status >= 300:
            raise BenchError(f"{method} {path} {what} answered {response.status}: "
                             f"{data.decode(errors='replace')}")
        return json.loads(data) if data else None

    def post(self, path: str, fields: Sequence[tuple[str, str]] = ()) -> Any:
        return self.call("POST", path, fields)

    def bulk(self, method: str, calls: Iterable[tuple[str, Sequence[tuple[str, str]]]],
             concurrency: int = 32) -> int:
        """
        Make many calls with C{concurrency} in flight (every write waits
        for the node to reload its configuration; in flight together,
        those reloads are shared). Returns how many were made.
        """
        with ThreadPoolExecutor(concurrency) as pool:
            return sum(1 for _ in pool.map(lambda c: self.call(method, c[0], c[1]), calls))


def fetch(port: int, path: str, headers: dict[str, str] | None = None,
          connection: http.client.HTTPConnection | None = None) -> tuple[int, dict[str, str], bytes]:
    """
    One GET on 127.0.0.1:C{port}: status, headers (lower-case names) and body.
    """
    own = connection is None
    if connection is None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        if own:
            connection.close()


class EchogateNode:
    """
    One echogate node: C{twistd -n echogate} from C{bin_dir} (a
    virtualenv's C{bin}), both listeners on 127.0.0.1 ports the node
    picks, the given database, pinned to C{cpus}.
    """

    def __init__(self, name: str, bin_dir: Path, dsn: str, directory: Path, cpus: str | None,
                 env: dict[str, str] | None = None, twistd_options: Sequence[str] = (),
                 backlog: int = BACKLOG, options: Sequence[str] = (), launcher: Sequence[str] = ()):
        self.name = name
        self.database = dsn
        directory.mkdir(parents=True, exist_ok=True)
        self.process = Process(
            name,
            [*launcher, str(bin_dir / "twistd"), "-n", "--pidfile=", *twistd_options, "echogate",
             "--proxy-listen", f"tcp:0:interface=127.0.0.1:backlog={backlog}",
             "--admin-listen", "tcp:0:interface=127.0.0.1",
             "--database", dsn, "--data-dir", str(directory / "data"), *options],
            directory / f"{name}.log", cpus=cpus, cwd=directory, env=env)
        self.proxy_port = 0
        self.admin: AdminClient | None = None

    def start(self, timeout: float = 120.0) -> "EchogateNode":
        """
        Start the node and wait until it is ready.
        """
        self.process.start()
        self.process.wait_for_log(r"echogate ready", timeout)
        ports = dict((kind, int(port)) for kind, port in _LISTENING.findall(self.process.log_tail(1_000_000)))
        if "proxy" not in ports or "admin" not in ports:
            raise BenchError(f"{self.name}: cannot find its ports in its log:\n{self.process.log_tail()}")
        self.proxy_port = ports["proxy"]
        self.admin = AdminClient(ports["admin"])
        return self

    def stop(self) -> None:
        self.process.stop()

    @property
    def api(self) -> AdminClient:
        if self.admin is None:
            raise BenchError(f"{self.name} is not running")
        return self.admin

    def add_service(self, name: str, upstream_port: int) -> dict[str, Any]:
        return self.api.post("/services", [("name", name), ("url", f"http://127.0.0.1:{upstream_port}")])

    def add_filler_routes(self, service_id: str, total: int, configs: bool = False) -> None:
        """
        Bring the node to C{total} routes, counting the one route it has:
        fillers the benchmark's requests never match, written straight to
        the database (L{bench.routes}), then one last route through the
        Admin API (C{/last}), and wait until the node serves that one, so
        it has loaded everything. With C{configs}, each filler also gets a
        plugin config, and a consumer with a key-auth key is added for each
        (see L{bench.routes}).
        """
        if total > 2:
            done = subprocess.run([sys.executable, "-m", "bench.routes", self.database, service_id, "0",
                                   str(total - 2), *(["configs"] if configs else [])],
                                  cwd=Path(__file__).resolve().parent.parent,
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise BenchError(f"writing {total - 2} routes failed:\n{done.stderr[-3000:]}")
        if total > 1:
            self.add_route("bench", "last", paths=["/last"])
            self.wait_until_served("/last" + PATHS["small"], timeout=300)

    def add_route(self, service: str, name: str, paths: Sequence[str] = (),
                  hosts: Sequence[str] = ()) -> dict[str, Any]:
        fields = [("name", name)] + [("paths[]", p) for p in paths] + [("hosts[]", h) for h in hosts]
        return self.api.post(f"/services/{service}/routes", fields)

    def add_fillers(self, service: str, first: int, count: int, concurrency: int = 32) -> None:
        """
        Add C{count} routes that the benchmark's requests never match:
        three in four by path prefix (C{/filler/N/api}), one in four by
        host and path (C{fN.example.com}, C{/}).
        """
        calls = []
        for n in range(first, first + count):
            fields = [("name", f"filler-{n}")]
            if n % 4 == 3:
                fields += [("hosts[]", f"f{n}.example.com"), ("paths[]", "/")]
            else:
                fields += [("paths[]", f"/filler/{n}/api")]
            calls.append((f"/services/{service}/routes", fields))
        self.api.bulk("POST", calls, concurrency)

    def available_plugins(self) -> list[str]:
        """
        The names of the plugins this node has enabled.
        """
        info = self.api.call("GET", "/")
        return sorted(info["plugins"]["available_on_server"])

    def add_plugins(self, route_id: str, names: Sequence[str], probe_path: str,
                    wanted: int) -> list[str]:
        """
        Add up to C{wanted} of C{names} to the route, in
        L{PLUGIN_SETTINGS}' order then by name, keeping each only if a
        request through the proxy still gets the upstream's answer (an
        authentication plugin, for one, answers 401 and is taken off).

        @return: the plugins kept, in the order added.
        """
        order = [n for n in PLUGIN_SETTINGS if n in names] + sorted(n for n in names if n not in PLUGIN_SETTINGS)
        kept: list[str] = []
        for name in order:
            if len(kept) == wanted:
                break
            try:
                plugin = self.api.post(f"/routes/{route_id}/plugins",
                                       [("name", name)] + PLUGIN_SETTINGS.get(name, []))
            except BenchError:
                continue
            status, _, body = fetch(self.proxy_port, probe_path, dict([ECHO_HEADER]))
            if status == 200 and body == SMALL_BODY:
                kept.append(name)
            else:
                self.api.call("DELETE", f"/plugins/{plugin['id']}")
        return kept

    def wait_until_served(self, path: str, timeout: float = 30.0, headers: dict[str, str] | None = None) -> None:
        """
        Wait until the proxy answers C{path} (asked with C{headers}) with
        the upstream's 100 bytes.
        """
        deadline = time.monotonic() + timeout
        while True:
            status, _, body = fetch(self.proxy_port, path, headers)
            if status == 200 and body == SMALL_BODY:
                return
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name} does not serve {path}: {status} {body[:200]!r}")
            time.sleep(0.05)
