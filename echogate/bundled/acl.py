"""
acl: let a request through by its consumer's groups, as Kong's acl plugin
does.

Configured with either C{allow} or C{deny} group names (exactly one). It
runs after the authentication plugins (priority 950) and judges the
consumer they identified by the groups of its C{acls} credentials (from
the configuration snapshot), or by the groups an earlier plugin left in
C{ctx.shared["authenticated_groups"]} (for a request without a consumer,
an anonymous one, or with C{always_use_authenticated_groups}).

Answers: 403 C{{"message": "You cannot consume this service"}}; 401
C{{"message": "Unauthorized"}} when no one is authenticated. A request let
through carries its groups to the service in X-Consumer-Groups (or
X-Authenticated-Groups), unless C{hide_groups_header}; copies of those
headers sent by the client are always removed.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from echogate.bundled.consumers import AUTHENTICATED_GROUPS, CONSUMER_GROUPS, UNAUTHORIZED
from echogate.entities import credentials
from echogate.plugin import GatewayPlugin
from echogate.schema import ENTITY, Array, Boolean, Record, String

FORBIDDEN = "You cannot consume this service"

#: The C{shared} key an earlier plugin may leave the request's groups under.
GROUPS_KEY = "authenticated_groups"


def _one_list(config: dict[str, Any]) -> Mapping[str, str] | None:
    given = [name for name in ("allow", "deny") if config.get(name)]
    if not given:
        return {ENTITY: "at least one of these fields must be non-empty: 'config.allow', 'config.deny'"}
    if len(given) > 1:
        return {ENTITY: "exactly one of these fields must be non-empty: 'config.allow', 'config.deny'"}
    return None


def _authenticated_groups(ctx: Any) -> tuple[str, ...] | None:
    groups = ctx.shared.get(GROUPS_KEY)
    if isinstance(groups, (list, tuple)):
        return tuple(str(g) for g in groups)
    return None


class ACL(GatewayPlugin):
    """
    Kong's acl (priority 950).
    """

    name = "acl"
    version = "1.0.0"
    priority = 950
    #: Its credentials, an entity it owns (stored in a table of their own).
    entities = (credentials.ACLS_ENTITY,)
    no_consumer = True
    config_schema = Record({
        "allow": Array(String(), description="Groups allowed to consume the service or route."),
        "deny": Array(String(), description="Groups not allowed to consume the service or route."),
        "hide_groups_header": Boolean(required=True, default=False, description=(
            "Do not send the consumer's groups to the service (X-Consumer-Groups).")),
        "always_use_authenticated_groups": Boolean(required=True, default=False, description=(
            "Judge by the groups an earlier plugin authenticated, even when there is a consumer.")),
    }, checks=(_one_list,))

    def access(self, ctx: Any, config: Mapping[str, Any]) -> None:
        upstream = ctx.upstream
        upstream.remove_header(CONSUMER_GROUPS)
        upstream.remove_header(AUTHENTICATED_GROUPS)
        deny = bool(config.get("deny"))
        listed: Sequence[str] = config["deny"] if deny else config["allow"]
        consumer = ctx.consumer
        credential = ctx.credential
        header = CONSUMER_GROUPS
        groups: tuple[str, ...] | None = None
        if consumer is None or credential is None or config["always_use_authenticated_groups"]:
            groups = _authenticated_groups(ctx)
            if groups is not None:
                header = AUTHENTICATED_GROUPS
        if groups is None:
            if consumer is None:
                self._refuse(ctx, credential)
                return
            groups = ctx.credentials.groups(consumer.get("id"))
            if not groups and not deny:
                self._refuse(ctx, credential)
                return
        member = any(group in groups for group in listed)
        if member == deny:
            ctx.exit(403, {"message": FORBIDDEN})
            return
        if not config["hide_groups_header"] and groups:
            upstream.set_header(header, ", ".join(groups))

    @staticmethod
    def _refuse(ctx: Any, credential: Any) -> None:
        if credential is not None:
            ctx.exit(403, {"message": FORBIDDEN})
        else:
            ctx.exit(401, {"message": UNAUTHORIZED})
