"""
The Admin API: a Klein application, served on its own listener, for
managing services, routes, consumers and plugins (see C{docs/admin-api.md}).

L{AdminAPI} is the application; L{NodeInfo} is what C{GET /} says about
the node.
"""
from echogate.admin.api import AdminAPI, NodeInfo

__all__ = ["AdminAPI", "NodeInfo"]
