"""
Several worker processes serving one proxy port (C{--workers N}).

Every process (the main one and its N-1 workers) listens on its own
socket bound with C{SO_REUSEPORT}, so the kernel spreads connections over
them. The main process alone serves the Admin API and runs the embedded
PostgreSQL server; each worker connects to the same database and learns of
configuration changes through LISTEN/NOTIFY, like any other node. Without
a database (C{database = off}), each worker loads the main process's
declarative configuration from a file the main process writes in
C{data_dir}, and reads it again when the main process signals it (SIGHUP)
after every change of its configuration. Workers
stop when the main process stops (it signals them by PID) or disappears.
"""
from __future__ import annotations

import os
import socket
import sys
from typing import Any, Mapping

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IListeningPort, IProcessTransport, IReactorProcess, IReactorSocket
from twisted.internet.protocol import ProcessProtocol, ServerFactory
from twisted.logger import Logger
from twisted.python.failure import Failure

from echogate.settings import HTTP2_FLAG, SSL_FLAG, Settings, offers_http2, parse_tcp, split_listener

_log = Logger(namespace="echogate.workers")

#: Set in a worker's environment: the main process's PID.
WORKER_OF = "ECHOGATE_WORKER_OF"


def listen_shared(reactor: IReactorSocket, description: str, factory: ServerFactory,
                  port: int | None = None) -> IListeningPort:
    """
    Listen on C{description} with C{SO_REUSEPORT} (C{port} overrides its
    port: the workers use the port the main process got). For an HTTPS
    listener C{factory} is its TLS factory: each process makes its own
    TLS contexts over its own socket.
    """
    family, interface, wanted, backlog = parse_tcp(description)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((interface, wanted if port is None else port))
        sock.listen(backlog)
        sock.setblocking(False)
        return reactor.adoptStreamPort(sock.fileno(), family, factory)
    finally:
        sock.close()


class _Worker(ProcessProtocol):
    """
    One worker process: C{ended} fires when it has ended.

    @ivar process: the process, once L{WorkerPool.start} has spawned it.
    """

    def __init__(self, number: int):
        self.number = number
        self.ended: Deferred[None] = Deferred()
        self.process: IProcessTransport | None = None

    def processEnded(self, reason: Failure) -> None:
        pid = self.process.pid if self.process is not None else None
        _log.info("worker {n} (pid {pid}) ended: {why}", n=self.number, pid=pid,
                  why=reason.getErrorMessage())
        self.ended.callback(None)


class WorkerPool:
    """
    The main process's workers: started once the main process is ready,
    stopped with it.
    """

    def __init__(self, reactor: IReactorProcess, settings: Settings, dsn: str, ports: list[int],
                 environ: Mapping[str, str] = os.environ, declarative_config: str = ""):
        self._reactor = reactor
        self._settings = settings
        self._dsn = dsn
        self._ports = ports
        self._environ = environ
        self._declarative_config = declarative_config
        self._workers: list[_Worker] = []

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in self._environ.items() if not k.startswith("ECHOGATE_")}
        s = self._settings
        proxy = []
        for entry, port in zip(s.proxy_listen, self._ports):
            description, tls = split_listener(entry)
            family, interface, _, backlog = parse_tcp(description)
            kind = "tcp6" if family == socket.AF_INET6 else "tcp"
            escaped = interface.replace(":", "\\:")
            proxy.append((f"{kind}:{port}:interface={escaped}:backlog={backlog}" if interface
                          else f"{kind}:{port}:backlog={backlog}") + (HTTP2_FLAG if offers_http2(entry) else "")
                         + (SSL_FLAG if tls else ""))
        env.update({
            "ECHOGATE_PROXY_LISTEN": ",".join(proxy),
            "ECHOGATE_DATABASE": self._dsn,
            "ECHOGATE_DECLARATIVE_CONFIG": self._declarative_config,
            "ECHOGATE_DATA_DIR": s.data_dir,
            "ECHOGATE_PLUGINS": ",".join(s.plugins),
            "ECHOGATE_TRUSTED_IPS": ",".join(s.trusted_ips),
            "ECHOGATE_CLIENT_MAX_BODY_SIZE": str(s.client_max_body_size),
            "ECHOGATE_ACCESS_LOG": "on" if s.access_log else "off",
            "ECHOGATE_CONFIG_CHECK_INTERVAL": str(s.config_check_interval),
            "ECHOGATE_DB_QUERY_TIMEOUT": str(s.db_query_timeout),
            "ECHOGATE_WORKERS": str(s.workers),
            "ECHOGATE_UPSTREAM_CLIENT": s.upstream_client,
            "ECHOGATE_REACTOR": s.reactor,
            "ECHOGATE_UPSTREAM_KEEPALIVE_POOL_SIZE": str(s.upstream_keepalive_pool_size),
            "ECHOGATE_UPSTREAM_KEEPALIVE_IDLE_TIMEOUT": str(s.upstream_keepalive_idle_timeout),
            "ECHOGATE_GC_YOUNG_THRESHOLD": str(s.gc_young_threshold),
            "ECHOGATE_MALLOC_TRIM_THRESHOLD": str(s.malloc_trim_threshold),
            "ECHOGATE_CLIENT_HEADER_TIMEOUT": str(s.client_header_timeout),
            "ECHOGATE_CLIENT_BODY_TIMEOUT": str(s.client_body_timeout),
            "ECHOGATE_SEND_TIMEOUT": str(s.send_timeout),
            "ECHOGATE_KEEPALIVE_TIMEOUT": str(s.keepalive_timeout),
            "ECHOGATE_MAX_CONNECTIONS": str(s.max_connections) if s.max_connections else "auto",
            "ECHOGATE_MAX_CONNECTIONS_PER_IP": str(s.max_connections_per_ip),
            "ECHOGATE_HTTP2_MAX_CONCURRENT_STREAMS": str(s.http2_max_concurrent_streams),
            "ECHOGATE_MAX_REQUEST_LINE": str(s.max_request_line),
            "ECHOGATE_MAX_HEADER_LINE": str(s.max_header_line),
            "ECHOGATE_MAX_HEADERS": str(s.max_headers),
            "ECHOGATE_REGEX_MATCH_TIMEOUT": repr(s.regex_match_timeout * 1000.0),
            "ECHOGATE_MISSING_PLUGINS": s.missing_plugins,
            "ECHOGATE_SHUTDOWN_TIMEOUT": str(s.shutdown_timeout),
            "ECHOGATE_REAL_IP_HEADER": s.real_ip_header,
            "ECHOGATE_REAL_IP_RECURSIVE": "on" if s.real_ip_recursive else "off",
            "ECHOGATE_HEADERS_WITH_UNDERSCORES": s.headers_with_underscores,
            "ECHOGATE_DNS_RESOLVER": ",".join(s.dns_resolver),
            "ECHOGATE_DNS_HOSTSFILE": s.dns_hostsfile,
            "ECHOGATE_DNS_ERROR_TTL": str(s.dns_error_ttl),
            "ECHOGATE_UPSTREAM_TLS_VERIFY": "on" if s.upstream_tls_verify else "off",
            "ECHOGATE_MAX_BUFFERED_RESPONSE": str(s.max_buffered_response),
            "ECHOGATE_SSL_CERT": s.ssl_cert,
            "ECHOGATE_SSL_CERT_KEY": s.ssl_cert_key,
            "ECHOGATE_SSL_PROTOCOLS": " ".join(s.ssl_protocols),
            "ECHOGATE_SSL_CIPHER_SUITE": s.ssl_cipher_suite,
            "ECHOGATE_SSL_CIPHERS": s.ssl_ciphers,
            "ECHOGATE_SSL_SESSION_TICKETS": "on" if s.ssl_session_tickets else "off",
            "ECHOGATE_SSL_SESSION_TIMEOUT": str(s.ssl_session_timeout),
            WORKER_OF: str(os.getpid()),
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        })
        return env

    def start(self) -> None:
        env = self._environment()
        argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
                "-n", "--pidfile=", "echogate"]
        for number in range(1, self._settings.workers):
            worker = _Worker(number)
            worker.process = self._reactor.spawnProcess(worker, sys.executable, argv, env=env,
                                                        childFDs={0: "w", 1: 1, 2: 2})
            _log.info("started worker {n} (pid {pid})", n=number, pid=worker.process.pid)
            self._workers.append(worker)

    def stop(self) -> Deferred[Any]:
        waits = []
        for worker in self._workers:
            if not worker.ended.called:
                try:
                    if worker.process is not None:
                        worker.process.signalProcess("TERM")
                except ProcessExitedAlready:
                    pass  # it ended between the check and the signal: ended fires
                except Exception:
                    _log.failure("could not stop worker {n}", n=worker.number)
                waits.append(worker.ended)
        return DeferredList(waits)

    def signal(self, name: str) -> None:
        """
        Send the signal C{name} (C{"HUP"}) to every worker still running.
        """
        for worker in self._workers:
            if worker.process is not None and not worker.ended.called:
                try:
                    worker.process.signalProcess(name)
                except ProcessExitedAlready:
                    pass

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w.process is not None and not w.ended.called]
