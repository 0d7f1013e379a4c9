"""
L{echogate.proxy.request.GatewayRequest.head_size}: the size of a request
head as the client sent it, kept by L{echogate.proxy.channel.GatewayChannel}
on both of its paths (a head whole in one read, and a head read line by
line).
"""
from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from echogate.proxy.heads import HeadLimits
from tests.proxy.test_channel import connect as connect_channel


class _Keep(Resource):
    """
    Keeps each request it is given, answering none.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Any] = []

    def render(self, request: Any) -> Any:
        self.requests.append(request)
        return NOT_DONE_YET


def connect() -> tuple[Any, _Keep]:
    resource = _Keep()
    channel, _, _ = connect_channel(HeadLimits(), resource)
    return channel, resource


HEAD = b"GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nX-Tight:1\r\nX-Spaced:   two  \r\n\r\n"


class HeadSizeTests(SynchronousTestCase):
    """
    The head's size is its bytes as sent (spaces, CRLFs and the blank line
    included), not the size of the lines as parsed.
    """

    def test_wholeHead(self) -> None:
        """
        A head that arrives whole in one read (the one-step path).
        """
        channel, resource = connect()
        channel.dataReceived(HEAD)
        [request] = resource.requests
        self.assertEqual(request.head_size, len(HEAD))

    def test_byteByByte(self) -> None:
        """
        A head that arrives a byte at a time (Twisted's line by line path)
        has the same size.
        """
        channel, resource = connect()
        for i in range(len(HEAD)):
            channel.dataReceived(HEAD[i:i + 1])
        [request] = resource.requests
        self.assertEqual(request.head_size, len(HEAD))

    def test_withBody(self) -> None:
        """
        A head with a body goes line by line; the body is not counted.
        """
        channel, resource = connect()
        head = b"POST /p HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\n"
        channel.dataReceived(head + b"hello")
        [request] = resource.requests
        self.assertEqual(request.head_size, len(head))

    def test_eachRequestItsOwn(self) -> None:
        """
        The sizes of two requests on one connection do not add up, whichever
        path each took, and an empty line before a request line (which
        Twisted skips once) is not part of the head.
        """
        channel, resource = connect()
        channel.dataReceived(HEAD)
        resource.requests[0].finish()
        second = b"GET /second HTTP/1.1\r\nHost: example.com\r\n\r\n"
        channel.dataReceived(b"\r\n" + second)
        resource.requests[1].finish()
        channel.dataReceived(HEAD[:10])
        channel.dataReceived(HEAD[10:])
        self.assertEqual([r.head_size for r in resource.requests], [len(HEAD), len(second), len(HEAD)])
