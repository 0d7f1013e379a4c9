"""
The C{twistd echogate} drop-in. Lazy: it imports nothing of echogate until
the command runs.
"""
from twisted.application.service import ServiceMaker

echogate = ServiceMaker(
    "echogate",
    "echogate.service",
    "An API gateway in the spirit of Kong: a reverse proxy with plugins and an Admin API.",
    "echogate",
)
