"""
echogate's bundled traffic-control and transformation plugins, as a
twisted.plugin drop-in (found by C{getPlugins(IGatewayPlugin)}):
correlation-id, cors, request-size-limiting, request-transformer,
response-transformer and request-termination.
"""
from echogate.bundled.correlation_id import CorrelationId
from echogate.bundled.cors import Cors
from echogate.bundled.request_size_limiting import RequestSizeLimiting
from echogate.bundled.request_termination import RequestTermination
from echogate.bundled.request_transformer import RequestTransformer
from echogate.bundled.response_transformer import ResponseTransformer

correlationId = CorrelationId()
cors = Cors()
requestSizeLimiting = RequestSizeLimiting()
requestTransformer = RequestTransformer()
responseTransformer = ResponseTransformer()
requestTermination = RequestTermination()
