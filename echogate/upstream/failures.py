"""
What a failed upstream attempt means: whether it may be retried on another
connection, and what the client is answered once it failed for good.
"""
from __future__ import annotations

from twisted.internet import error as ierror
from twisted.internet.defer import CancelledError

from echogate.errors import BAD_UPSTREAM, UPSTREAM_TIMEOUT, ProxyError
from echogate.upstream.tls import describe_tls


def is_connect_failure(failure_value: BaseException | None) -> bool:
    """
    Whether an attempt failed before a connection existed (so it may be
    retried on another).
    """
    return isinstance(failure_value, (ierror.ConnectError, ierror.TimeoutError, ierror.ConnectingCancelledError))


def failure_answer(value: BaseException | None, timed_out: bool) -> ProxyError:
    """
    What the client gets when a request to a service failed for good: 504
    when it ran out of time (the deadline, a connect timeout, a cancelled
    connection attempt), else 502.
    """
    if timed_out or isinstance(value, (ierror.TimeoutError, ierror.ConnectingCancelledError, CancelledError)):
        answer = ProxyError(504, UPSTREAM_TIMEOUT)
    else:
        answer = ProxyError(502, BAD_UPSTREAM)
    # What went wrong, for the gateway's error log.
    answer.__cause__ = value
    return answer


def describe(value: BaseException | None, timed_out: bool = False) -> str:
    """
    A short reason for a failed upstream exchange, for the error log (as
    nginx words its own: "connection refused", "timed out", ...).
    """
    if timed_out or isinstance(value, (ierror.TimeoutError, CancelledError, ierror.ConnectingCancelledError)):
        return "timed out"
    if value is None:
        return "failed"
    tls = describe_tls(value)
    if tls is not None:
        return tls
    reasons = getattr(value, "reasons", None)
    if reasons:
        # Agent's ResponseFailed / RequestTransmissionFailed wrap Failures.
        return "; ".join(describe(getattr(r, "value", r)) for r in reasons)
    text = str(value).strip() or type(value).__name__
    if isinstance(value, ierror.ConnectionRefusedError):
        return "connection refused"
    return text
