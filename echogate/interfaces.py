"""
The contracts between echogate's parts, and between echogate and its plugins.
"""
from __future__ import annotations

from twisted.plugin import IPlugin
from zope.interface import Attribute, Interface


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


class IPluginPhases(Interface):
    """
    The optional phases of an L{IGatewayPlugin}, in the order they run.

    Each may return a value, a L{twisted.internet.defer.Deferred}, or be
    C{async def}. C{ctx} is the plugin's view of the request context
    (L{echogate.pdk.context.PluginContext}); C{config} is the validated config
    (a read-only mapping) that applies to this request.
    """

    def init(configs):
        """
        Called once at start-up with every stored config of this plugin.
        """

    def rewrite(ctx, config):
        """
        Before routing; runs only for global plugin configs.
        """

    def access(ctx, config):
        """
        After routing, before the upstream request. May answer the request
        with C{ctx.exit(status, body, headers)}.
        """

    def header_filter(ctx, config):
        """
        With the upstream's (or the short-circuit's) status and headers,
        before they are sent to the client.
        """

    def body_filter(ctx, config, chunk):
        """
        For each chunk of the response body (C{bytes}); returns the bytes
        to send instead (C{b""} to drop the chunk). Called once more with
        C{chunk=b""} and C{ctx.response.eof} true at the end.
        """

    def log(ctx, config):
        """
        After the response is finished or the client went away; always
        runs, also for short-circuited and failed requests.
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
    L{echogate.errors} exceptions: L{UniqueViolation},
    L{ForeignKeyViolation}, L{DatabaseUnavailable}.
    """

    def insert(entity, record):
        """
        Store a new record (with C{id}, C{created_at}, C{updated_at} set).
        Fires with the stored record.
        """

    def update(entity, record):
        """
        Replace the record with C{record["id"]}. Fires with the stored
        record, or fails with L{NotFound}.
        """

    def upsert(entity, record):
        """
        Insert or replace the record with C{record["id"]}. Fires with the
        stored record.
        """

    def write(operations):
        """
        Several writes in one transaction, all or nothing:
        C{operations} is a list of C{(operation, entity, record)} with
        C{operation} one of C{"insert"}, C{"update"}, C{"upsert"}. Fires
        with the stored records in order.
        """

    def delete(entity, id):
        """
        Delete the record (and, by cascade, what belongs to it). Fires with
        C{True} if it existed, C{False} otherwise.
        """

    def get(entity, key):
        """
        Fire with the record whose id, or endpoint key (a service's or
        route's C{name}, a consumer's C{username} or C{custom_id}), is
        C{key}, or C{None}.
        """

    def page(entity, size, offset=None, tags=None, tags_any=False, where=None):
        """
        Fire with C{(records, next_offset)}: at most C{size} records in a
        stable order after the opaque C{offset}, C{next_offset} C{None} on
        the last page. C{tags}: records carrying all (or, with
        C{tags_any}, any) of these tags. C{where}: foreign-key filters such
        as C{{"service": id}}.
        """

    def load():
        """
        Fire with a L{echogate.store.data.ConfigurationData}: every service,
        route, plugin, consumer and credential, and the configuration
        version, read in one transaction.
        """

    def version():
        """
        Fire with the current configuration version (an integer that every
        write increases).
        """

    def subscribe(callback):
        """
        Call C{callback(version)} whenever any node changes the
        configuration (through LISTEN/NOTIFY), and C{callback(None)} after
        the notification connection was lost and regained (so the caller
        reloads everything). Returns a callable that unsubscribes.
        """
