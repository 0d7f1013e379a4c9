"""
echogate's bundled traffic-control and transformation plugins, as a
twisted.plugin drop-in (found by C{getPlugins(IGatewayPlugin)}):
correlation-id, cors, request-size-limiting, request-transformer,
response-transformer, request-termination and grpc-web.
"""
from echogate.bundled.correlation_id import CorrelationId
from echogate.bundled.cors import Cors
from echogate.bundled.grpc_web import GrpcWeb
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
grpcWeb = GrpcWeb()
