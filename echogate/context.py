"""
What a plugin phase receives (public API): L{PluginContext} and the
request and response objects it reaches. The PDK lives in
L{echogate.pdk}; this module keeps the names plugin authors have always
imported from C{echogate.context}.
"""
from echogate.pdk.context import PluginContext, PluginLogger, RequestContext
from echogate.pdk.messages import (
                                   ClientRequest,
                                   Exit,
                                   HeaderEditor,
                                   HeaderPairs,
                                   ResponseState,
                                   UpstreamRequest,
                                   encode_exit_body,
)

__all__ = [
    "PluginContext",
    "PluginLogger",
    "RequestContext",
    "ClientRequest",
    "Exit",
    "HeaderEditor",
    "HeaderPairs",
    "ResponseState",
    "UpstreamRequest",
    "encode_exit_body",
]
