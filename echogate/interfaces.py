"""
The contracts between echogate's parts, and between echogate and its plugins.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from twisted.plugin import IPlugin
from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred
    from twisted.internet.interfaces import IProtocol


class IGatewayPlugin(IPlugin):
    """
    A gateway plugin: found by C{getPlugins(IGatewayPlugin)} in any
    C{twisted/plugins/} directory on C{sys.path}, enabled by name with
    C{--plugins}, configured through the Admin API.

    A plugin object is shared by every request in flight, so it must be
    immutable: subclass L{echogate.plugin.GatewayPlugin} (or use a frozen
    attrs class). Per-request state belongs on C{ctx.plugin} (this
    plugin's) or C{ctx.shared} (all plugins'); the registry refuses to
    load a plugin object whose attributes can be assigned.

    Phases are optional methods, documented on L{IPluginPhases}; a plugin
    implements any subset of them.

    @since: 0.1.0
    """

    name = Attribute("The plugin's unique name, e.g. C{'header-echo'}.")
    version = Attribute("The plugin's version, C{'x.y.z'}.")
    priority = Attribute("An integer; plugins with higher priority run first.")
    config_schema = Attribute(
        "An L{echogate.schema.Record} describing C{config}: its fields,"
        " types, defaults and checks."
    )

    # Optional: C{no_consumer = True} refuses configs scoped to a consumer
    # (as Kong's cors or the auth plugins themselves); not verified.
    # Optional: C{node_service(node)}, the node hook (L{IPluginNode}).


class IPluginPhases(Interface):
    """
    The optional phases of an L{IGatewayPlugin}, in the order they run.

    Each may return a value, a L{twisted.internet.defer.Deferred}, or be
    C{async def}. C{ctx} is the plugin's view of the request context
    (L{echogate.pdk.context.PluginContext}); C{config} is the validated config
    (a read-only mapping) that applies to this request.

    @since: 0.1.0
    """

    def init(configs: Sequence[Mapping[str, Any]]) -> object:
        """
        Called once at start-up with every stored config of this plugin.
        """

    def configure(configs: Sequence[Mapping[str, Any]]) -> object:
        """
        Called with every enabled config of this plugin (a list of
        read-only mappings, maybe empty): once at start-up, after C{init},
        and again after each configuration change that changed this
        plugin's configs (one added, edited, enabled, disabled or
        removed), so that the plugin can rebuild state derived from them
        (Kong 3's C{configure}). Calls are never concurrent: a call
        returning a Deferred finishes before the next one starts. A
        failure is logged; requests go on.

        @since: 0.1.0
        """

    def rewrite(ctx: Any, config: Mapping[str, Any]) -> object:
        """
        Before routing; runs only for global plugin configs.
        """

    def access(ctx: Any, config: Mapping[str, Any]) -> object:
        """
        After routing, before the upstream request. May answer the request
        with C{ctx.exit(status, body, headers)}.
        """

    def header_filter(ctx: Any, config: Mapping[str, Any]) -> object:
        """
        With the upstream's (or the short-circuit's) status and headers,
        before they are sent to the client.
        """

    def body_filter(ctx: Any, config: Mapping[str, Any], chunk: bytes) -> object:
        """
        For each chunk of the response body (C{bytes}); returns the bytes
        to send instead (C{b""} to drop the chunk). Called once more with
        C{chunk=b""} and C{ctx.response.eof} true at the end.
        """

    def log(ctx: Any, config: Mapping[str, Any]) -> object:
        """
        After the response is finished or the client went away; always
        runs, also for short-circuited and failed requests.
        """


class IPluginNode(Interface):
    """
    What a plugin receives from the node that runs it, through its optional
    C{node_service(node)} hook: called once for every enabled plugin that
    defines it, before C{init} and before the node serves any request. The
    hook returns an C{IService} that runs with the node (and is stopped
    with it), or C{None}.

    A plugin takes its reactor (timers, the time, connections) and its
    thread pool from here, never from C{twisted.internet.reactor}, so that
    its tests (L{echogate.testing.GatewayHarness}) control its time.

    @since: 0.1.0
    """

    reactor = Attribute(
        "The node's reactor. It always provides"
        " L{twisted.internet.interfaces.IReactorTime} (C{seconds},"
        " C{callLater}); in a running node also C{IReactorTCP},"
        " C{IReactorSSL} and C{IReactorPluggableNameResolver} for the"
        " connections a plugin opens. In"
        " L{echogate.testing.GatewayHarness} it is the harness's C{Clock}."
    )
    node_id = Attribute("This node's id (a UUID string).")
    dsn = Attribute(
        "The node's PostgreSQL DSN, or C{None} where there is no database"
        " (L{echogate.testing.GatewayHarness})."
    )

    http = Attribute(
        "An L{echogate.pdk.http.HTTPClient} for calling other services:"
        " C{request(method, url, headers, body, timeout)}, C{get}, C{post},"
        " each a Deferred of an L{echogate.pdk.http.HTTPResponse}. In a"
        " running node it sends through the node's upstream client (its"
        " connection pool, TLS settings and clock); in"
        " L{echogate.testing.GatewayHarness}, to the harness's C{outbound}"
        " handler. C{None} for a node that has no upstream client."
    )

    def cache(name: str, ttl: float | None = 60.0, neg_ttl: float | None = None,
              max_size: int = 1000) -> Any:
        """
        This node's L{echogate.pdk.cache.Cache} called C{name}, made on
        first use with these settings (asking again with other settings
        raises L{echogate.pdk.cache.CacheConflict}). Its values expire on
        the node's clock; its C{invalidate(key)} reaches every node of the
        cluster (through the database), the harness's only itself.

        @since: 0.1.0
        """

    def run_in_thread(f: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
        """
        Call C{f(*args, **kwargs)} off the reactor thread: in the node's
        reactor thread pool in a running node; in line (or as the test
        says) in L{echogate.testing.GatewayHarness}.

        @return: a Deferred firing with C{f}'s result, or failing with
            what it raised.
        """


class IStore(Interface):
    """
    Where entities live: PostgreSQL (L{echogate.store.postgres.PostgresStore}), or a
    test double in unit tests.

    Entities are Kong-shaped dicts (JSON-ready) already validated by
    L{echogate.entities.writes}; foreign keys are C{{"id": ...}} dicts. Entity
    names are the Admin API's collection names: C{"services"},
    C{"routes"}, C{"consumers"}, C{"plugins"}. Every method returns a
    Deferred; every write is one transaction that also bumps the
    configuration version and notifies every node. Failures are
    L{echogate.errors} exceptions:
    L{echogate.errors.UniqueViolation},
    L{echogate.errors.ForeignKeyViolation},
    L{echogate.errors.DatabaseUnavailable}.

    Providers: L{echogate.store.postgres.PostgresStore},
    L{echogate.testing.MemoryStore} (in memory, for tests), and the node's
    store as its Admin API sees it before the database is connected.

    @since: 0.1.0
    """

    def insert(entity: str, record: Mapping[str, Any]) -> Deferred[dict[str, Any]]:
        """
        Store a new record (with C{id}, C{created_at}, C{updated_at} set).
        Fires with the stored record; fails with
        L{echogate.errors.PrimaryKeyViolation} when its id is taken,
        L{echogate.errors.UniqueViolation} or
        L{echogate.errors.ForeignKeyViolation}.
        """

    def update(entity: str, record: Mapping[str, Any]) -> Deferred[dict[str, Any]]:
        """
        Replace the record with C{record["id"]}. Fires with the stored
        record, or fails with L{echogate.errors.NotFound} (or as C{insert}
        does).
        """

    def upsert(entity: str, record: Mapping[str, Any]) -> Deferred[dict[str, Any]]:
        """
        Insert or replace the record with C{record["id"]}. Fires with the
        stored record.
        """

    def write(operations: list[tuple[str, str, Mapping[str, Any]]]) -> Deferred[list[dict[str, Any]]]:
        """
        Several writes in one transaction, all or nothing:
        C{operations} is a list of C{(operation, entity, record)} with
        C{operation} one of C{"insert"}, C{"update"}, C{"upsert"}, or
        C{"delete"} (of C{record["id"]}, cascading as L{delete} does; its
        place in the result is the record deleted, and a missing record
        fails with L{echogate.errors.NotFound}). Fires with the stored
        records in order; on the first failure, fails as that write would
        have and nothing is stored (nor the version bumped).
        """

    def delete(entity: str, id: str) -> Deferred[bool]:
        """
        Delete the record (and, by cascade, what belongs to it). Fires with
        C{True} if it existed, C{False} otherwise; fails with
        L{echogate.errors.ForeignKeyViolation} for a service that routes
        still reference.
        """

    def get(entity: str, key: str) -> Deferred[dict[str, Any] | None]:
        """
        Fire with the record whose id, or endpoint key (a service's or
        route's C{name}, a consumer's C{username} or C{custom_id}), is
        C{key}, or C{None}.
        """

    def page(entity: str, size: int, offset: str | None = None, tags: Iterable[str] | None = None,
             tags_any: bool = False, where: Mapping[str, Any] | None = None,
             ) -> Deferred[tuple[list[dict[str, Any]], str | None]]:
        """
        Fire with C{(records, next_offset)}: at most C{size} records in a
        stable order after the opaque C{offset}, C{next_offset} C{None} on
        the last page. C{tags}: records carrying all (or, with
        C{tags_any}, any) of these tags. C{where}: foreign-key filters such
        as C{{"service": id}}. Fails with
        L{echogate.store.offsets.InvalidOffset} for an offset this store
        did not make, L{ValueError} for a C{size} below 1.
        """

    def tagged(tag: str | None, size: int, offset: str | None = None,
               ) -> Deferred[tuple[list[dict[str, Any]], str | None]]:
        """
        Fire with C{(rows, next_offset)}: at most C{size} tags of records
        of every entity, each row C{{"entity_name": ..., "entity_id": ...,
        "tag": ...}} (one per tag of a record; with C{tag}, only the rows
        of that tag), ordered by the record's id, its entity, then the
        tag's position in its C{tags}; after the opaque C{offset},
        C{next_offset} C{None} on the last page. Fails with
        L{echogate.store.offsets.InvalidOffset} for an offset this method
        did not make, L{ValueError} for a C{size} below 1.
        """

    def load() -> Deferred[Any]:
        """
        Fire with a L{echogate.store.data.ConfigurationData}: every service,
        route, plugin, consumer and credential, and the configuration
        version, read in one transaction.
        """

    def version() -> Deferred[int]:
        """
        Fire with the current configuration version (an integer that every
        write increases).
        """

    def subscribe(callback: Callable[[int | None], object]) -> Callable[[], None]:
        """
        Call C{callback(version)} whenever any node changes the
        configuration (through LISTEN/NOTIFY), and C{callback(None)} after
        the notification connection was lost and regained (so the caller
        reloads everything). Returns a callable that unsubscribes.
        """


class IUpstreamResponse(Interface):
    """
    A service's response as an L{IUpstreamClient} delivers it, whichever
    client made it: the status, the headers (as the service sent them, and
    the end-to-end ones the gateway passes on), and the body.

    @since: 0.1.0
    """

    code = Attribute("The status code (C{int}).")
    length = Attribute(
        "The body's length (C{int}) when the service declared it, else"
        " C{None} (chunked or close-delimited)."
    )
    raw_headers = Attribute(
        "The headers as the service sent them, hop-by-hop ones included"
        " where the client keeps them: C{(name, value)} byte pairs, or a"
        " L{twisted.web.http_headers.Headers}. What C{header_filter} plugins"
        " read as the upstream headers (C{ctx.response.upstream_headers})."
    )
    end_to_end = Attribute(
        "The end-to-end header lines: C{list} of C{(name, value)} byte"
        " pairs, without hop-by-hop headers, the names Connection lists, and"
        " Content-Length (the length travels as C{length}). A fresh list"
        " the caller may change and pass on."
    )
    via = Attribute("C{bool}: whether C{end_to_end} has a Via header.")
    trailers = Attribute(
        "The trailers that followed the body (HTTP/2 services: gRPC's"
        " C{grpc-status}, C{grpc-message} and metadata): C{(name, value)}"
        " byte pairs, set before the body's end is delivered; C{None} for a"
        " response without any (every HTTP/1.1 one). @since: 0.2.0"
    )

    def whole_body() -> bytes | None:
        """
        The whole body, when all of it has already arrived (and ended well)
        and nothing was asked of the body yet: then it is taken (as
        C{deliverBody} would have delivered it). Otherwise C{None}, and the
        body is read with C{deliverBody}.

        @rtype: C{bytes} or C{None}
        """

    def deliverBody(protocol: IProtocol) -> None:
        """
        Deliver the body to C{protocol} (an
        L{twisted.internet.interfaces.IProtocol}): C{makeConnection} with
        a transport that pauses, resumes and stops the upstream,
        C{dataReceived} per piece, then C{connectionLost} with
        L{twisted.web.client.ResponseDone} at a complete end, or another
        failure. Called at most once, and not after C{whole_body} gave the
        body.
        """


class IUpstreamClient(Interface):
    """
    Sends requests to services (echogate's lean HTTP/1.1 client, or the
    one built on Twisted's L{twisted.web.client.Agent}), with the
    service's timeouts and retries.

    @since: 0.1.0
    """

    def send(service: dict[str, Any], method: bytes, target: bytes, headers: Any, body: Any,
             on_response: Callable[..., object], on_failure: Callable[..., object],
             args: tuple[Any, ...] = ()) -> Any:
        """
        Send one request to C{service} (a service record: C{protocol},
        C{host}, C{port}, C{connect_timeout}, C{read_timeout},
        C{write_timeout}, C{retries}), without a Deferred: exactly one of
        C{on_response(response, *args)}, with an L{IUpstreamResponse} once
        its head is in, or C{on_failure(failure, *args)}, with a
        L{twisted.python.failure.Failure} of an
        L{echogate.errors.ProxyError} (502, or 504 after a timeout), is
        called, maybe before C{send} returns, unless the request is
        cancelled first.

        @param method: the method (C{bytes}).
        @param target: the path and query (C{bytes}).
        @param headers: the request headers: C{(name, value)} byte pairs or
            a L{twisted.web.http_headers.Headers}.
        @param body: C{None}, or the request body
            (L{echogate.proxy.streaming.RequestBody}: C{producer()} makes a
            fresh producer for each attempt, C{read()} the bytes).
        @param args: passed on to whichever callback is called.
        @return: the request's handle: C{cancel()} aborts it (neither
            callback is then called); C{called} says whether one was.
        """

    def close() -> Deferred[None]:
        """
        Close every idle connection to services.

        @return: a Deferred firing with C{None} once they are closed.
        """
