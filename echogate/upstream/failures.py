"""
What a failed upstream attempt means: whether it may be retried on another
connection, and what the client is answered once it failed for good.
"""
from __future__ import annotations

from twisted.internet import error as ierror
from twisted.internet.defer import CancelledError

from echogate.errors import BAD_UPSTREAM, UPSTREAM_TIMEOUT, ProxyError


def is_connect_failure(failure_value: BaseException) -> bool:
    """
    Whether an attempt failed before a connection existed (so it may be
    retried on another).
    """
    return isinstance(failure_value, (ierror.ConnectError, ierror.TimeoutError, ierror.ConnectingCancelledError))


def failure_answer(value: BaseException, timed_out: bool) -> ProxyError:
    """
    What the client gets when a request to a service failed for good: 504
    when it ran out of time (the deadline, a connect timeout, a cancelled
    connection attempt), else 502.
    """
    if timed_out or isinstance(value, (ierror.TimeoutError, ierror.ConnectingCancelledError, CancelledError)):
        return ProxyError(504, UPSTREAM_TIMEOUT)
    return ProxyError(502, BAD_UPSTREAM)
