"""
The C{twistd --reactor echogate} drop-in: L{echogate.polling.GatewayReactor},
Twisted's epoll reactor without a log context per ready connection. The
node installs it by default (the C{reactor} setting); this name lets any
twistd application choose it.
"""
from twisted.application.reactors import Reactor

echogate = Reactor(
    "echogate",
    "echogate.polling",
    "epoll, without a log context per ready connection (echogate's; Linux).",
)
