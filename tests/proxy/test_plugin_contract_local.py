"""
The plugin contract for the gateway's own answers (a 404 when no route
matches, a 502 when the upstream fails, a plugin's C{ctx.exit}), through
L{echogate.testing.GatewayHarness}, when a phase is asynchronous: an
asynchronous C{header_filter} does not make the C{body_filter} phase be
skipped, and an asynchronous first C{body_filter} does not make its
end-of-body (eof) call be skipped (see L{tests.proxy.test_plugin_contract}).
"""
from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from echogate.testing import UpstreamRequestSeen
from tests.proxy.test_plugin_contract import (
    Explosion,
    harness_of,
    make_plugin,
    recording_plugin,
)

NO_ROUTE = b'{"message": "no Route matched with those values"}'


def _failing_upstream(request: UpstreamRequestSeen) -> Any:
    raise Explosion("the upstream is down")


class LocalAnswerAsyncPhaseTests(SynchronousTestCase):
    """
    A 404, a 502 and C{ctx.exit}, with a plugin (C{slow}, first) whose
    C{header_filter} or first C{body_filter} waits on a Deferred: every
    plugin's C{body_filter} runs on the body, then on eof, and the client
    gets the whole body.
    """

    def answer(self, trigger: str, phase: str, style: str) -> tuple[Any, list, bytes]:
        """
        Make the gateway answer by itself (C{trigger}: C{"404"}, C{"502"}
        or C{"exit"}) with C{slow}'s C{phase} asynchronous in C{style}
        (C{"deferred"} or C{"coroutine"}); release it and return the
        response, the events and the expected body.
        """
        events: list = []
        gate: Deferred = Deferred()

        def record_body(ctx: Any, chunk: bytes) -> None:
            events.append(("slow", "body_filter", chunk, ctx.response.eof))

        phases: dict[str, Callable] = {}
        if phase == "header_filter":
            if style == "deferred":
                def header_filter(self_: Any, ctx: Any, config: Any) -> Deferred:
                    events.append(("slow", "header_filter"))
                    return gate
            else:
                async def header_filter(self_: Any, ctx: Any, config: Any) -> None:
                    events.append(("slow", "header_filter"))
                    await gate

            def body_filter(self_: Any, ctx: Any, config: Any, chunk: bytes) -> None:
                record_body(ctx, chunk)

            phases["header_filter"] = header_filter
        elif style == "deferred":
            def body_filter(self_: Any, ctx: Any, config: Any, chunk: bytes) -> Any:
                record_body(ctx, chunk)
                return None if ctx.response.eof else gate
        else:
            async def body_filter(self_: Any, ctx: Any, config: Any, chunk: bytes) -> None:
                record_body(ctx, chunk)
                if not ctx.response.eof:
                    await gate
        phases["body_filter"] = body_filter

        kw: dict[str, Any] = {}
        path = "/"
        if trigger == "exit":
            def access(self_: Any, ctx: Any, config: Any) -> None:
                ctx.exit(418, b"teapot")

            phases["access"] = access
            expected = b"teapot"
        elif trigger == "404":
            kw["route"] = {"paths": ["/api"]}
            path = "/elsewhere"
            expected = NO_ROUTE
        else:
            kw["upstream"] = _failing_upstream
            expected = b""
        harness = harness_of(make_plugin("slow", 20, **phases), recording_plugin("next", events, 10), **kw)
        pending = harness.request("GET", path)
        self.assertNoResult(pending)
        gate.callback(None)
        response = self.successResultOf(pending)
        if trigger == "502":
            expected = response.body
        return response, events, expected

    def check(self, trigger: str, phase: str, style: str) -> None:
        response, events, body = self.answer(trigger, phase, style)
        self.assertEqual(response.status, {"404": 404, "502": 502, "exit": 418}[trigger])
        self.assertEqual(response.body, body)
        self.assertNotEqual(body, b"")
        for name in ("slow", "next"):
            self.assertEqual([e[2:] for e in events if e[:2] == (name, "body_filter")],
                             [(body, False), (b"", True)], name)
        self.assertIn(("next", "log"), events)

    def test_noRouteHeaderFilterDeferred(self) -> None:
        """A 404 after a header_filter returning a Deferred: body_filter runs on body and eof."""
        self.check("404", "header_filter", "deferred")

    def test_noRouteHeaderFilterCoroutine(self) -> None:
        """A 404 after an C{async def} header_filter: body_filter runs on body and eof."""
        self.check("404", "header_filter", "coroutine")

    def test_noRouteBodyFilterDeferred(self) -> None:
        """A 404 whose first body_filter returns a Deferred: the eof call still runs."""
        self.check("404", "body_filter", "deferred")

    def test_noRouteBodyFilterCoroutine(self) -> None:
        """A 404 whose first body_filter is C{async def}: the eof call still runs."""
        self.check("404", "body_filter", "coroutine")

    def test_badGatewayHeaderFilterDeferred(self) -> None:
        """A 502 after a header_filter returning a Deferred: body_filter runs on body and eof."""
        self.check("502", "header_filter", "deferred")

    def test_badGatewayHeaderFilterCoroutine(self) -> None:
        """A 502 after an C{async def} header_filter: body_filter runs on body and eof."""
        self.check("502", "header_filter", "coroutine")

    def test_badGatewayBodyFilterDeferred(self) -> None:
        """A 502 whose first body_filter returns a Deferred: the eof call still runs."""
        self.check("502", "body_filter", "deferred")

    def test_badGatewayBodyFilterCoroutine(self) -> None:
        """A 502 whose first body_filter is C{async def}: the eof call still runs."""
        self.check("502", "body_filter", "coroutine")

    def test_exitHeaderFilterDeferred(self) -> None:
        """C{ctx.exit} then a header_filter returning a Deferred: body_filter runs on body and eof."""
        self.check("exit", "header_filter", "deferred")

    def test_exitHeaderFilterCoroutine(self) -> None:
        """C{ctx.exit} then an C{async def} header_filter: body_filter runs on body and eof."""
        self.check("exit", "header_filter", "coroutine")

    def test_exitBodyFilterDeferred(self) -> None:
        """C{ctx.exit} whose first body_filter returns a Deferred: the eof call still runs."""
        self.check("exit", "body_filter", "deferred")

    def test_exitBodyFilterCoroutine(self) -> None:
        """C{ctx.exit} whose first body_filter is C{async def}: the eof call still runs."""
        self.check("exit", "body_filter", "coroutine")
