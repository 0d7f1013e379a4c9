"""
Settings: flags over ECHOGATE_<KEY> over the config file over defaults,
and every bad value refused with a message naming the setting.
"""
from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from echogate.settings import (
    DEFAULT_BACKLOG,
    DEFAULTS,
    ConfigError,
    Options,
    connection_limit,
    parse_size,
    read_config_file,
    redact_dsn,
    resolve,
    with_backlog,
)


class ResolveTests(SynchronousTestCase):
    def conf(self, text: str) -> str:
        path = Path(self.mktemp())
        path.write_text(text)
        return str(path)

    def test_defaults(self) -> None:
        """
        With nothing given, the documented defaults.
        """
        settings = resolve({}, {}, None)
        self.assertEqual(settings.proxy_listen, ("tcp:8000:interface=0.0.0.0", "tcp:8443:interface=0.0.0.0 http2 ssl"))
        self.assertEqual(settings.admin_listen, ("tcp:8001:interface=127.0.0.1",))
        self.assertEqual(settings.database, "")
        self.assertEqual(settings.data_dir, "./echogate-data")
        self.assertEqual(settings.plugins, ("bundled",))
        self.assertEqual(settings.client_max_body_size, 0)
        self.assertFalse(settings.access_log)

    def test_precedence(self) -> None:
        """
        Flag beats environment beats file beats default.
        """
        conf = self.conf("proxy_listen = tcp:1001\nadmin_listen = tcp:1002\ndata_dir = /from-file\n")
        env = {"ECHOGATE_PROXY_LISTEN": "tcp:2001", "ECHOGATE_ADMIN_LISTEN": "tcp:2002"}
        settings = resolve({"proxy_listen": "tcp:3001"}, env, conf)
        self.assertEqual(settings.proxy_listen, ("tcp:3001",))
        self.assertEqual(settings.admin_listen, ("tcp:2002",))
        self.assertEqual(settings.data_dir, "/from-file")
        self.assertEqual(settings.plugins, ("bundled",))

    def test_severalListeners(self) -> None:
        """
        Comma-separated endpoints give several listeners.
        """
        settings = resolve({"proxy_listen": "tcp:1, tcp:2:interface=127.0.0.1"}, {}, None)
        self.assertEqual(settings.proxy_listen, ("tcp:1", "tcp:2:interface=127.0.0.1"))

    def test_sizes(self) -> None:
        """
        Sizes take k, m and g suffixes.
        """
        self.assertEqual(parse_size("0"), 0)
        self.assertEqual(parse_size("512k"), 512 * 1024)
        self.assertEqual(parse_size("10m"), 10 * 1024**2)
        self.assertEqual(parse_size("1G"), 1024**3)

    def test_badValues(self) -> None:
        """
        Every kind of bad value is refused, naming its setting.
        """
        cases = {
            "proxy_listen": "nonsense:thing",
            "admin_listen": "",
            "trusted_ips": "not-an-ip",
            "access_log": "sometimes",
            "database": "mysql://x",
            "client_max_body_size": "lots",
            "config_check_interval": "0",
            "db_query_timeout": "soon",
            "plugins": " , ",
            "workers": "many",
            "upstream_keepalive_pool_size": "-1",
            "upstream_keepalive_idle_timeout": "0",
        }
        for key, value in cases.items():
            error = self.assertRaises(ConfigError, resolve, {key: value}, {}, None)
            self.assertIn(key, str(error), f"row key={key!r} value={value!r}")
        error = self.assertRaises(ConfigError, resolve, {"upstream_keepalive_pool_size": "lots"}, {}, None)
        self.assertIn("not a whole number", str(error))

    def test_fileErrors(self) -> None:
        """
        A missing file, a line without '=', and an unknown key are refused
        with the file and line.
        """
        self.assertIn("cannot read", str(self.assertRaises(ConfigError, read_config_file, "/no/such/file")))
        error = self.assertRaises(ConfigError, read_config_file, self.conf("# comment\nproxy_listen\n"))
        self.assertIn(":2:", str(error))
        error = self.assertRaises(ConfigError, read_config_file, self.conf("typo = 1\n"))
        self.assertIn("unknown setting 'typo'", str(error))

    def test_fileComments(self) -> None:
        """
        Comments and blank lines are ignored; keys are case-insensitive.
        """
        values = read_config_file(self.conf("\n# a comment\nPLUGINS = bundled,x  # trailing\n"))
        self.assertEqual(values, {"plugins": "bundled,x"})

    def test_everyKeyHasAnEnvironmentVariable(self) -> None:
        """
        Every setting can be given as ECHOGATE_<KEY>.
        """
        env = {"ECHOGATE_" + key.upper(): value for key, value in
               {"data_dir": "/d", "trusted_ips": "10.0.0.0/8", "access_log": "on",
                "client_max_body_size": "1k", "config_check_interval": "2", "db_query_timeout": "3",
                "database": "postgresql://u:secret@h/db", "plugins": "off", "workers": "2",
                "upstream_client": "agent", "reactor": "Twisted", "upstream_keepalive_pool_size": "7",
                "upstream_keepalive_idle_timeout": "2.5", "upstream_tls_verify": "off", "gc_young_threshold": "900",
                "malloc_trim_threshold": "2m", "client_header_timeout": "7", "client_body_timeout": "8",
                "send_timeout": "9", "keepalive_timeout": "11", "max_connections": "300",
                "max_connections_per_ip": "12",
                "http2_max_concurrent_streams": "64", "max_request_line": "4k", "max_header_line": "2k",
                "max_headers": "50", "regex_match_timeout": "20", "missing_plugins": "skip",
                "shutdown_timeout": "0", "admin_token": "s3cret", "admin_server_names": "Admin.Example,gw:8001",
                "real_ip_header": "X-Forwarded-For", "real_ip_recursive": "on", "headers_with_underscores": "reject",
                "dns_resolver": "127.0.0.1:5300", "dns_hostsfile": "/h", "dns_error_ttl": "4",
                "ssl_cert": "", "ssl_cert_key": "", "ssl_protocols": "TLSv1.3", "ssl_cipher_suite": "modern",
                "ssl_ciphers": "", "ssl_session_tickets": "off", "ssl_session_timeout": "5m",
                "max_buffered_response": "2m", "declarative_config": "",
                }.items()}
        settings = resolve({}, env, None)
        self.assertEqual(settings.data_dir, "/d")
        self.assertEqual(settings.trusted_ips, ("10.0.0.0/8",))
        self.assertTrue(settings.access_log)
        self.assertEqual(settings.client_max_body_size, 1024)
        self.assertEqual(settings.max_buffered_response, 2 * 1024**2)
        self.assertEqual(settings.plugins, ("off",))
        self.assertEqual(settings.workers, 2)
        self.assertEqual(settings.upstream_client, "agent")
        self.assertEqual((settings.upstream_keepalive_pool_size, settings.upstream_keepalive_idle_timeout), (7, 2.5))
        self.assertFalse(settings.upstream_tls_verify)
        self.assertEqual(settings.gc_young_threshold, 900)
        self.assertEqual(settings.malloc_trim_threshold, 2 * 1024**2)
        self.assertEqual((settings.client_header_timeout, settings.client_body_timeout, settings.send_timeout,
                          settings.keepalive_timeout), (7, 8, 9, 11))
        self.assertEqual((settings.max_connections, settings.max_connections_per_ip), (300, 12))
        self.assertEqual(settings.http2_max_concurrent_streams, 64)
        self.assertEqual((settings.max_request_line, settings.max_header_line, settings.max_headers),
                         (4096, 2048, 50))
        self.assertEqual(settings.regex_match_timeout, 0.02)
        self.assertEqual(settings.missing_plugins, "skip")
        self.assertEqual(settings.reactor, "twisted")
        self.assertEqual(settings.shutdown_timeout, 0)
        self.assertEqual(settings.admin_token, "s3cret")
        self.assertEqual(settings.admin_server_names, ("admin.example", "gw:8001"))
        self.assertEqual((settings.real_ip_header, settings.real_ip_recursive, settings.headers_with_underscores),
                         ("x-forwarded-for", True, "reject"))
        self.assertEqual((settings.dns_resolver, settings.dns_hostsfile, settings.dns_error_ttl),
                         (("127.0.0.1:5300",), "/h", 4.0))
        self.assertEqual((settings.ssl_protocols, settings.ssl_cipher_suite, settings.ssl_session_tickets,
                          settings.ssl_session_timeout), (("TLSv1.3",), "modern", False, 300))
        self.assertEqual(set(DEFAULTS) - {"proxy_listen", "admin_listen"},
                         {k[len("ECHOGATE_"):].lower() for k in env})

    def test_edgeDefaults(self) -> None:
        """
        The edge settings default to nginx's and Kong's values.
        """
        settings = resolve({}, {}, None)
        self.assertEqual((settings.client_header_timeout, settings.client_body_timeout, settings.send_timeout,
                          settings.keepalive_timeout), (60, 60, 60, 75))
        self.assertEqual((settings.max_connections, settings.max_connections_per_ip), (0, 0))
        self.assertEqual((settings.max_request_line, settings.max_header_line, settings.max_headers),
                         (8192, 8192, 100))
        self.assertEqual((settings.regex_match_timeout, settings.missing_plugins, settings.shutdown_timeout),
                         (0.005, "refuse", 10))
        self.assertEqual((settings.admin_token, settings.admin_server_names), ("", ()))

    def test_badEdgeValues(self) -> None:
        """
        Each bad edge setting stops start-up with a line naming it.
        """
        cases = {
            "client_header_timeout": ("0", "client_header_timeout: must be greater than 0"),
            "max_connections": ("0", "max_connections: must be 1 or more"),
            "max_connections_per_ip": ("-1", "max_connections_per_ip: must be 0 or more"),
            "max_request_line": ("10", "max_request_line: must be between 256 and 1m"),
            "max_header_line": ("2g", "max_header_line: must be between 256 and 1m"),
            "max_headers": ("0", "max_headers: must be between 1 and 10000"),
            "regex_match_timeout": ("x", "regex_match_timeout: 'x' is not a number"),
            "missing_plugins": ("ignore", "missing_plugins: expected 'refuse' or 'skip', got 'ignore'"),
            "reactor": ("epoll", "reactor: expected 'echogate' or 'twisted', got 'epoll'"),
            "shutdown_timeout": ("-1", "shutdown_timeout: must be 0 or more"),
            "admin_server_names": ("a b", "admin_server_names: 'a b' is not a host name"),
            "real_ip_header": ("X Real", "real_ip_header: 'X Real' is not a header name"),
            "real_ip_recursive": ("yes", "real_ip_recursive: expected 'on' or 'off', got 'yes'"),
            "headers_with_underscores": ("keep", "headers_with_underscores: expected 'drop' or 'reject' or 'allow',"
                                                 " got 'keep'"),
        }
        for key, (value, message) in cases.items():
            with self.assertRaises(ConfigError) as caught:
                resolve({key: value}, {}, None)
            self.assertEqual(str(caught.exception), message, f"row key={key!r} value={value!r} message={message!r}")

    def test_automaticConnectionLimit(self) -> None:
        """
        C{max_connections = auto} keeps a reserve of descriptors and halves
        the rest (a client connection may hold an upstream socket), never
        under 16.
        """
        self.assertEqual(connection_limit(1024), (1024 - 256) // 2)
        self.assertEqual(connection_limit(100), 16)
        self.assertEqual(resolve({"max_connections": "auto"}, {}, None).public()["max_connections"],
                         connection_limit())

    def test_publicHidesToken(self) -> None:
        """
        The settings GET / shows carry no admin token.
        """
        settings = resolve({"admin_token": "s3cret"}, {}, None)
        self.assertNotIn("s3cret", repr(settings.public()))
        self.assertNotIn("s3cret", repr(settings))

    def test_publicHidesPassword(self) -> None:
        """
        The settings GET / shows carry no password.
        """
        settings = resolve({"database": "postgresql://u:secret@h:5432/db"}, {}, None)
        self.assertNotIn("secret", repr(settings.public()))
        self.assertEqual(redact_dsn("host=h password=secret dbname=x"), "host=h password=*** dbname=x")


class OptionsTests(SynchronousTestCase):
    def test_flagsAndEnvironment(self) -> None:
        """
        twistd's options resolve through the same rules, with --config.
        """
        options = Options()
        options.environ = {"ECHOGATE_DATA_DIR": "/env"}
        options.parseOptions(["--proxy-listen", "tcp:9", "--plugins", "off"])
        self.assertEqual(options.settings.proxy_listen, ("tcp:9",))
        self.assertEqual(options.settings.data_dir, "/env")

    def test_badValueExits(self) -> None:
        """
        A bad value ends option parsing with one line starting 'echogate:'.
        """
        options = Options()
        options.environ = {}
        error = self.assertRaises(SystemExit, options.parseOptions, ["--access-log", "maybe"])
        self.assertTrue(str(error).startswith("echogate: access_log"))


class BacklogTests(SynchronousTestCase):
    def test_defaultBacklog(self) -> None:
        """
        A tcp, tcp6, ssl or unix listener without C{backlog=} gets nginx's
        default backlog (511), not Twisted's 50; one that says it keeps it;
        other kinds are left alone.
        """
        self.assertEqual(with_backlog("tcp:8000"), "tcp:8000:backlog=511")
        self.assertEqual(with_backlog("tcp6:8000:interface=\\:\\:1"), "tcp6:8000:interface=\\:\\:1:backlog=511")
        self.assertEqual(with_backlog("unix:/run/gw.sock"), "unix:/run/gw.sock:backlog=511")
        self.assertEqual(with_backlog("TCP:1:backlog=7"), "TCP:1:backlog=7")
        self.assertEqual(with_backlog("systemd:domain=INET:index=0"), "systemd:domain=INET:index=0")
        self.assertEqual(DEFAULT_BACKLOG, 511)

    def test_listenersUseIt(self) -> None:
        """
        The gateway's proxy and admin listeners are bound with the default
        backlog unless their endpoint string gives one.
        """
        from twisted.internet.testing import MemoryReactorClock

        from echogate.service import GatewayService

        reactor = MemoryReactorClock()
        settings = resolve({"proxy_listen": "tcp:8000,tcp:8002:backlog=64",
                            "admin_listen": "tcp:8001:interface=127.0.0.1"}, {}, None)
        GatewayService(reactor, settings, {}).bind()
        self.assertEqual(sorted((port, backlog) for port, _, backlog, _ in reactor.tcpServers),
                         [(8000, 511), (8001, 511), (8002, 64)])

    def test_workersShareItToo(self) -> None:
        """
        Shared (--workers) listeners have the same default.
        """
        from echogate.settings import parse_tcp

        self.assertEqual(parse_tcp("tcp:8000")[3], 511)
        self.assertEqual(parse_tcp("tcp:8000:backlog=9")[3], 9)


class DNSSettingsTests(SynchronousTestCase):
    """
    Kong's C{dns_resolver}, C{dns_hostsfile} and C{dns_error_ttl}.
    """

    def test_defaults(self) -> None:
        """
        By default: the name servers of /etc/resolv.conf, /etc/hosts, and
        names that did not resolve asked again after a second.
        """
        settings = resolve({}, {}, None)
        self.assertEqual(settings.dns_resolver, ())
        self.assertEqual(settings.dns_hostsfile, "/etc/hosts")
        self.assertEqual(settings.dns_error_ttl, 1.0)

    def test_nameServers(self) -> None:
        """
        C{dns_resolver} is a comma list of C{ip[:port]}, given back with
        the port (53 when absent) and IPv6 in brackets.
        """
        settings = resolve({"dns_resolver": "127.0.0.1, 10.0.0.2:5353,[::1]:54, ::2"}, {}, None)
        self.assertEqual(settings.dns_resolver,
                         ("127.0.0.1:53", "10.0.0.2:5353", "[::1]:54", "[::2]:53"))

    def test_fromEnvironmentAndFile(self) -> None:
        """
        The DNS settings come from C{ECHOGATE_DNS_*} and the config file
        like every other.
        """
        path = Path(self.mktemp())
        path.write_text("dns_hostsfile = /tmp/hosts\ndns_error_ttl = 2.5\n")
        settings = resolve({}, {"ECHOGATE_DNS_RESOLVER": "192.0.2.1"}, str(path))
        self.assertEqual(settings.dns_resolver, ("192.0.2.1:53",))
        self.assertEqual(settings.dns_hostsfile, "/tmp/hosts")
        self.assertEqual(settings.dns_error_ttl, 2.5)
        self.assertEqual(resolve({"dns_hostsfile": ""}, {}, None).dns_hostsfile, "")

    def test_badValues(self) -> None:
        """
        A name server that is not an IP address, a bad port, and a TTL
        that is not positive are refused, naming the setting.
        """
        for key, value in [("dns_resolver", "dns.example"), ("dns_resolver", "127.0.0.1:0"),
                           ("dns_resolver", "127.0.0.1:x"), ("dns_resolver", "[::1"),
                           ("dns_resolver", "[::1]x"), ("dns_resolver", "10.0.0.1:99999"),
                           ("dns_error_ttl", "0"), ("dns_error_ttl", "soon")]:
            error = self.assertRaises(ConfigError, resolve, {key: value}, {}, None)
            self.assertIn(key, str(error), f"row key={key!r} value={value!r}")

    def test_public(self) -> None:
        """
        C{GET /} shows the DNS settings.
        """
        public = resolve({"dns_resolver": "127.0.0.1"}, {}, None).public()
        self.assertEqual(public["dns_resolver"], ["127.0.0.1:53"])
        self.assertEqual(public["dns_hostsfile"], "/etc/hosts")


class ProxyListenTests(SynchronousTestCase):
    """
    C{proxy_listen}: Kong's C{ADDRESS:PORT [flags]} entries beside Twisted
    endpoint strings.
    """

    def listen(self, value: str, **more: str) -> tuple[str, ...]:
        return resolve({"proxy_listen": value, **more}, {}, None).proxy_listen

    def pem(self) -> str:
        """
        A file holding a key and its certificate, for Twisted's ssl: endpoints.
        """
        from echogate.proxy.tls import self_signed

        cert_pem, key_pem = self_signed("a.test")
        path = Path(self.mktemp())
        path.write_bytes(key_pem + cert_pem)
        return str(path)

    def test_kongAddresses(self) -> None:
        """
        Kong's IPv4, IPv6 and C{*} addresses become tcp endpoints; C{ssl}
        marks an HTTPS listener and C{backlog=N} goes into the endpoint.
        """
        self.assertEqual(self.listen("0.0.0.0:8000, 127.0.0.1:8443 ssl, [::1]:9000 backlog=7 ssl, *:80"),
                         ("tcp:8000:interface=0.0.0.0", "tcp:8443:interface=127.0.0.1 ssl",
                          "tcp6:9000:interface=\\:\\:1:backlog=7 ssl", "tcp:80"))

    def test_twistedEndpointsKeepWorking(self) -> None:
        """
        Twisted endpoint strings are kept as written, and take the flags too.
        """
        pem = self.pem()
        self.assertEqual(self.listen(f"tcp:8000, ssl:8443:privateKey={pem}, tcp:8444:interface=127.0.0.1 ssl"),
                         ("tcp:8000", f"ssl:8443:privateKey={pem}", "tcp:8444:interface=127.0.0.1 ssl"))

    def test_splitListener(self) -> None:
        """
        L{split_listener} gives back the endpoint string and the ssl flag.
        """
        from echogate.settings import split_listener

        self.assertEqual(split_listener("tcp:8443:interface=0.0.0.0 ssl"), ("tcp:8443:interface=0.0.0.0", True))
        self.assertEqual(split_listener("tcp:8000"), ("tcp:8000", False))
        self.assertEqual(split_listener("tcp:8443 http2 ssl"), ("tcp:8443", True))
        self.assertEqual(split_listener("tcp:8000 http2"), ("tcp:8000", False))

    def test_http2Flag(self) -> None:
        """
        Kong's http2 flag, on a plain or an ssl listener, in either order
        with ssl; L{offers_http2} tells it.
        """
        from echogate.settings import offers_http2

        self.assertEqual(self.listen("127.0.0.1:8000 http2, 127.0.0.1:8443 ssl http2, 127.0.0.1:9 ssl"),
                         ("tcp:8000:interface=127.0.0.1 http2", "tcp:8443:interface=127.0.0.1 http2 ssl",
                          "tcp:9:interface=127.0.0.1 ssl"))
        self.assertEqual([offers_http2(e) for e in ("tcp:1 http2", "tcp:1 http2 ssl", "tcp:1 ssl", "tcp:1")],
                         [True, True, False, False])

    def test_badEntries(self) -> None:
        """
        An unknown flag, a bad address or port, ssl on an ssl: endpoint and
        a backlog given twice are refused, naming proxy_listen.
        """
        for value in ["0.0.0.0:8000 http3", "300.1.1.1:8000", "0.0.0.0:70000", f"ssl:8443:privateKey={self.pem()} ssl",
                      "tcp:8000:backlog=5 backlog=6", "nonsense:thing", "0.0.0.0:80 backlog=x", ","]:
            error = self.assertRaises(ConfigError, self.listen, value)
            self.assertIn("proxy_listen", str(error), value)

    def test_workersTakeSslListeners(self) -> None:
        """
        --workers shares HTTPS listeners too; Twisted's own ssl: endpoints
        still cannot be shared.
        """
        self.assertEqual(self.listen("127.0.0.1:0 ssl", workers="2"), ("tcp:0:interface=127.0.0.1 ssl",))
        error = self.assertRaises(ConfigError, self.listen, f"ssl:8443:privateKey={self.pem()}", workers="2")
        self.assertIn("workers", str(error))


class TLSSettingsTests(SynchronousTestCase):
    """
    The C{ssl_*} settings.
    """

    def test_defaults(self) -> None:
        """
        TLS 1.2 and 1.3, Mozilla's intermediate ciphers, tickets on, a day
        of resumption, no configured default certificate.
        """
        settings = resolve({}, {}, None)
        self.assertEqual((settings.ssl_protocols, settings.ssl_cipher_suite, settings.ssl_session_tickets,
                          settings.ssl_session_timeout, settings.ssl_cert, settings.ssl_cert_key),
                         (("TLSv1.2", "TLSv1.3"), "intermediate", True, 86400, "", ""))
        self.assertIn("ECDHE-RSA-AES128-GCM-SHA256", settings.cipher_list)

    def test_customCiphers(self) -> None:
        """
        C{ssl_cipher_suite = custom} uses C{ssl_ciphers}; protocols are
        case-insensitive and kept oldest first.
        """
        settings = resolve({"ssl_cipher_suite": "custom", "ssl_ciphers": "ECDHE-RSA-AES256-GCM-SHA384",
                            "ssl_protocols": "tlsv1.3 TLSv1.1"}, {}, None)
        self.assertEqual(settings.cipher_list, "ECDHE-RSA-AES256-GCM-SHA384")
        self.assertEqual(settings.ssl_protocols, ("TLSv1.1", "TLSv1.3"))

    def test_badValues(self) -> None:
        """
        Each bad C{ssl_*} value is refused, naming the setting.
        """
        for flags, key in [({"ssl_protocols": "SSLv3"}, "ssl_protocols"), ({"ssl_protocols": ""}, "ssl_protocols"),
                           ({"ssl_cipher_suite": "old"}, "ssl_cipher_suite"),
                           ({"ssl_cipher_suite": "custom"}, "ssl_cipher_suite"),
                           ({"ssl_cipher_suite": "custom", "ssl_ciphers": "NOPE-NOTHING"}, "ssl_ciphers"),
                           ({"ssl_ciphers": "HIGH"}, "ssl_ciphers"),
                           ({"ssl_cipher_suite": "modern", "ssl_protocols": "TLSv1.2"}, "ssl_cipher_suite"),
                           ({"ssl_session_tickets": "maybe"}, "ssl_session_tickets"),
                           ({"ssl_session_timeout": "0"}, "ssl_session_timeout"),
                           ({"ssl_session_timeout": "1w"}, "ssl_session_timeout"),
                           ({"ssl_cert": "/nonexistent.pem"}, "ssl_cert"),
                           ({"ssl_cert": "/nonexistent.pem", "ssl_cert_key": "/nonexistent.key"}, "ssl_cert")]:
            error = self.assertRaises(ConfigError, resolve, flags, {}, None)
            self.assertIn(key, str(error), flags)

    def test_certificateFiles(self) -> None:
        """
        C{ssl_cert} and C{ssl_cert_key} must hold a certificate and its own
        key.
        """
        from echogate.proxy.tls import self_signed

        cert_pem, key_pem = self_signed("a.test")
        other_key = self_signed("b.test")[1]
        paths = {}
        for name, data in [("cert", cert_pem), ("key", key_pem), ("other", other_key), ("junk", b"junk")]:
            path = Path(self.mktemp())
            path.write_bytes(data)
            paths[name] = str(path)
        settings = resolve({"ssl_cert": paths["cert"], "ssl_cert_key": paths["key"]}, {}, None)
        self.assertEqual((settings.ssl_cert, settings.ssl_cert_key), (paths["cert"], paths["key"]))
        for cert, key, named in [("cert", "other", "ssl_cert_key"), ("junk", "key", "ssl_cert"),
                                 ("cert", "junk", "ssl_cert_key")]:
            error = self.assertRaises(ConfigError, resolve, {"ssl_cert": paths[cert], "ssl_cert_key": paths[key]},
                                      {}, None)
            self.assertIn(named, str(error))
