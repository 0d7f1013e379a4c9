"""
Waiting in integration tests on a condition, never on a fixed delay: a
test that sleeps and then asserts passes or fails with the machine's load,
and proves nothing when the sleep happens to be too short or too long.
"""
from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar, Union

from twisted.internet import reactor
from twisted.internet.task import deferLater

T = TypeVar("T")


async def until(predicate: Callable[[], Union[T, Awaitable[T]]], timeout: float = 10.0,
                interval: float = 0.05, message: str = "") -> T:
    """
    Call C{predicate} (a plain function or a coroutine function) every
    C{interval} seconds until it returns something true, and return that.

    @param timeout: how long to keep trying, in seconds of the real
        reactor's clock; past it the wait fails rather than hangs.
    @param message: said in the failure, with the last value seen.
    @raise AssertionError: if C{predicate} never held within C{timeout}.
    """
    deadline = reactor.seconds() + timeout
    attempts = 0
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        attempts += 1
        if value:
            return value
        if reactor.seconds() >= deadline:
            raise AssertionError(f"condition never held after {attempts} tries in {timeout}s: "
                                 f"{message or predicate!r} (last value {value!r})")
        await deferLater(reactor, interval, lambda: None)
