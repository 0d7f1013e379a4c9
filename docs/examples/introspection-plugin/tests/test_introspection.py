"""
The introspection plugin in L{GatewayHarness}: its calls go to the
harness's C{outbound} handler, its cache runs on the harness's clock, its
audiences follow its configs through C{configure}.
"""
from __future__ import annotations

import json
from typing import Any

from introspection import Introspection
from twisted.trial import unittest

from echogate.testing import GatewayHarness, UpstreamAnswer, UpstreamRequestSeen

URL = "http://auth.test/introspect"


class Authority:
    """
    The introspection endpoint's double: counts its calls.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.down = False

    def __call__(self, request: UpstreamRequestSeen) -> UpstreamAnswer:
        self.calls += 1
        if self.down:
            return UpstreamAnswer(500)
        token = request.body.decode().split("=", 1)[1]
        claims: dict[str, Any] = {"active": token == "good", "sub": "alice", "aud": "shop"}
        return UpstreamAnswer(200, {"Content-Type": "application/json"}, json.dumps(claims).encode())


class IntrospectionTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.authority = Authority()
        self.harness = GatewayHarness([Introspection()], configs=[("introspection", {"url": URL,
                                                                                       "audience": ["shop"]})],
                                      outbound=self.authority)

    def get(self, token: str) -> Any:
        return self.successResultOf(self.harness.request("GET", "/", headers={"Authorization": f"Bearer {token}"}))

    def test_activeToken(self) -> None:
        """
        An active token passes, its subject sent upstream.
        """
        self.assertEqual(self.get("good").status, 200)
        self.assertEqual(self.harness.upstream_requests[0].header("x-subject"), "alice")

    def test_cachedForTTL(self) -> None:
        """
        The endpoint is asked once per token until the TTL runs out.
        """
        self.get("good")
        self.get("good")
        self.assertEqual(self.authority.calls, 1)
        self.harness.clock.advance(300)
        self.get("good")
        self.assertEqual(self.authority.calls, 2)

    def test_inactiveCachedBriefly(self) -> None:
        """
        An inactive token is refused, and remembered for C{neg_ttl}.
        """
        self.assertEqual(self.get("bad").status, 401)
        self.get("bad")
        self.assertEqual(self.authority.calls, 1)
        self.harness.clock.advance(30)
        self.get("bad")
        self.assertEqual(self.authority.calls, 2)

    def test_endpointDown(self) -> None:
        """
        An endpoint failing is a 503, not cached.
        """
        self.authority.down = True
        self.assertEqual(self.get("good").status, 503)
        self.authority.down = False
        self.assertEqual(self.get("good").status, 200)

    def test_audienceFollowsConfigs(self) -> None:
        """
        When the configs change, configure rebuilds the audiences.
        """
        self.harness.set_configs([("introspection", {"url": URL, "audience": ["admin"]})])
        self.assertEqual(self.get("good").status, 401)

    def test_invalidate(self) -> None:
        """
        Invalidating a token makes the next request ask again.
        """
        self.get("good")
        self.harness.node.cache("introspection", ttl=300, neg_ttl=30).invalidate("good")
        self.get("good")
        self.assertEqual(self.authority.calls, 2)
