"""
Running plugin phases: L{run_phase} runs one phase over a plan's steps and
only pays for a Deferred when a phase returns one; L{call_phase} calls one;
L{PluginFailure} names the plugin and phase that raised.

Which steps apply to a request is L{echogate.proxy.plan}'s business.
"""
from __future__ import annotations

import inspect
import typing
from typing import Any, Callable, Sequence

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from echogate.proxy.plan import PHASES, PhaseSteps, Step

__all__ = ["PHASES", "PluginFailure", "as_deferred", "call_phase", "run_phase", "run_steps"]


class PluginFailure(Exception):
    """
    A plugin's phase raised; carries the plugin name and phase.
    """

    def __init__(self, plugin: str, phase: str, error: BaseException):
        super().__init__(f"plugin {plugin!r} failed in {phase}: {error!r}")
        self.plugin = plugin
        self.phase = phase
        self.error = error


def as_deferred(result: Any) -> Any:
    """
    Turn a coroutine into a Deferred; leave anything else alone.
    """
    if inspect.iscoroutine(result):
        return Deferred.fromCoroutine(result)
    return result


def run_steps(items: Sequence[Any], call: Callable[[Any], Any],
              stop: Callable[[], bool] | None = None, start: int = 0) -> Deferred | None:
    """
    Call C{call(item)} for each item in order. Returns C{None} when every
    call returned synchronously, or a Deferred that fires when the last one
    has (each call starts after the previous one's Deferred fired). Stops
    early once C{stop()} is true. Exceptions propagate (synchronously, or
    through the Deferred).
    """
    index = start
    count = len(items)
    while index < count:
        result = call(items[index])
        index += 1
        if result is not None:
            result = as_deferred(result)
            if isinstance(result, Deferred):
                def rest(_: object, i: int = index) -> Deferred[Any] | None:
                    return None if stop is not None and stop() else run_steps(items, call, stop, i)
                return result.addCallback(rest)
        if stop is not None and stop():
            return None
    return None


def run_phase(ctx: Any, steps: Sequence[Step], phase: str, config_of: Callable[[Step], Any] | None = None,
              until_exit: bool = False, start: int = 0) -> Deferred | None:
    """
    Run C{phase} of C{steps} (steps that have it) for the request of
    C{ctx} (a L{echogate.pdk.context.RequestContext}, or anything with its
    C{view}, C{views} and C{exit}): each step's method is called with the
    step's view of C{ctx} and its config, C{config_of(step)} when given
    (C{None} skips the step), else the step's entry's.

    As L{run_steps} with L{call_phase}, in one loop: returns C{None} when
    every call returned synchronously, or a Deferred once one returns a
    Deferred or a coroutine (the rest run after it fired); an exception,
    now or later, becomes L{PluginFailure}. With C{until_exit}, stops once
    a plugin made C{ctx.exit}.
    """
    if config_of is None and type(steps) is PhaseSteps and steps.phase == phase:
        # The usual run: each step with its entry's config, from the calls
        # the steps worked out once; a view made before is found in the
        # context's views without a call.
        calls = steps.calls
        views = ctx.views
        index = start
        count = len(calls)
        while index < count:
            name, method, config = calls[index]
            index += 1
            view = views.get(name)
            if view is None:
                view = ctx.view(name)
            try:
                result = method(view, config)
                if result is not None:
                    result = as_deferred(result)
            except PluginFailure:
                raise
            except BaseException as e:
                raise PluginFailure(name, phase, e) from e
            # (see below)
            if result is not None and isinstance(result, Deferred):
                def rest_of_calls(_: object, i: int = index) -> Deferred[Any] | None:
                    return None if until_exit and ctx.exit is not None else run_phase(
                        ctx, steps, phase, None, until_exit, i)
                return _tag(result, name, phase).addCallback(rest_of_calls)
            if until_exit and ctx.exit is not None:
                return None
        return None
    index = start
    count = len(steps)
    while index < count:
        step = steps[index]
        index += 1
        if config_of is None:
            config = step.config
        else:
            config = config_of(step)
            if config is None:
                continue
        try:
            result = getattr(step, phase)(ctx.view(step.name), config)
            if result is not None:
                result = as_deferred(result)
        except PluginFailure:
            raise
        except BaseException as e:
            raise PluginFailure(step.name, phase, e) from e
        # (None first: Deferred is generic, so isinstance goes through
        # ABCMeta's Python-level check, about a microsecond.)
        if result is not None and isinstance(result, Deferred):
            def rest(_: object, i: int = index) -> Deferred[Any] | None:
                return None if until_exit and ctx.exit is not None else run_phase(
                    ctx, steps, phase, config_of, until_exit, i)
            return _tag(result, step.name, phase).addCallback(rest)
        if until_exit and ctx.exit is not None:
            return None
    return None


def _tag(result: Deferred, step_name: str, phase: str) -> Deferred:
    """
    Turn C{result}'s failure into a L{PluginFailure} of C{step_name}'s
    C{phase} (unless it is one already).
    """
    def tag(failure: Failure) -> Failure:
        if failure.check(PluginFailure):
            return failure
        error = typing.cast(BaseException, failure.value)  # (an errback's failure has one)
        raise PluginFailure(step_name, phase, error) from error
    return result.addErrback(tag)


def call_phase(step_name: str, phase: str, method: Callable, *args: Any) -> Any:
    """
    Call a plugin's phase, turning exceptions (now or later) into
    L{PluginFailure}.
    """
    try:
        result = method(*args)
        if result is None:
            return None
        result = as_deferred(result)
    except PluginFailure:
        raise
    except BaseException as e:
        raise PluginFailure(step_name, phase, e) from e
    if type(result) is not bytes and isinstance(result, Deferred):  # (see run_phase)
        _tag(result, step_name, phase)
    return result
