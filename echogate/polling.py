"""
The node's reactor: Twisted's epoll reactor, with the common event of a
ready descriptor handled without a log context.

Twisted's reactors call every ready descriptor through
C{log.callWithLogger}, which asks the descriptor for its C{logPrefix} and
pushes a copy of the logging context with it as C{system}, so that a
legacy C{log.msg} made during the call is labelled with its connection.
On a proxy that is the largest single cost of a request after its own
work: two ready descriptors a request (the client's, the service's), about
16,000 instructions each under CPython (docs/performance.md).

L{GatewayReactor} reads a descriptor that is readable, and only readable,
(or writes one that is writable, and only writable) directly, with
Twisted's checks around it: a descriptor whose C{fileno()} is C{-1}, a
read or write that returns a reason to disconnect, or that raises. Any
other event (a hang-up, an error, readable and writable at once) goes
through Twisted's own C{_doReadOrWrite} under the log context, as in
Twisted. An exception from a read or write is logged under the
descriptor's C{logPrefix}, as Twisted logs it. What is lost is the label
of a legacy C{twisted.python.log.msg} made by application code while it
reads or writes without failing; C{twisted.logger} events, which
echogate's own code and Twisted's HTTP code emit, never carried it.

The node installs it when it starts (the C{reactor} setting, default
C{echogate}) unless a reactor is installed already (C{twistd --reactor}
chooses one first); C{twistd --reactor echogate} installs it for any
application (C{twisted/plugins/echogate_reactor.py}). Importing this
module raises C{ImportError} where there is no epoll (as Twisted's
C{epollreactor} does).
"""

from __future__ import annotations

import errno
import select
import sys

from twisted.internet import epollreactor
from twisted.internet.main import installReactor
from twisted.python import log

__all__ = ["GatewayReactor", "install"]

_IN = select.EPOLLIN
_OUT = select.EPOLLOUT


class GatewayReactor(epollreactor.EPollReactor):
    """
    An epoll reactor that reads (or writes) a descriptor ready only for
    that without pushing a log context: see the module's docstring.
    """

    def doPoll(self, timeout: float | None) -> None:
        """
        Wait for events (at most C{timeout} seconds; C{None}: until one
        comes), then handle each ready descriptor's.
        """
        try:
            events = self._poller.poll(-1 if timeout is None else timeout, len(self._selectables))
        except OSError as err:
            if err.errno == errno.EINTR:
                return
            raise
        selectables = self._selectables
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is None:
                continue
            reading = event == _IN
            if not (reading or event == _OUT) or selectable.fileno() == -1:
                log.callWithLogger(selectable, self._doReadOrWrite, selectable, fd, event)
                continue
            try:
                why = selectable.doRead() if reading else selectable.doWrite()
            except BaseException:
                why = sys.exc_info()[1]
                log.callWithLogger(selectable, log.err)
            if why:
                self._disconnectSelectable(selectable, why, reading)

    doIteration = doPoll


def install() -> None:
    """
    Install a L{GatewayReactor} as C{twisted.internet.reactor}.

    @raise twisted.internet.error.ReactorAlreadyInstalledError: a reactor
        is installed already.
    """
    installReactor(GatewayReactor())
