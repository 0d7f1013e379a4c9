"""
echogate's bundled rate-limiting, caching and observability plugins, as a
twisted.plugin drop-in (found by C{getPlugins(IGatewayPlugin)}):
rate-limiting, proxy-cache, prometheus, http-log and file-log.

Each object keeps its long-lived state (counters, cache, metrics, queues,
writer thread) in a store it was built with, and starts its background
work only when first needed, so importing this module is cheap.
"""
from echogate.bundled.file_log import FileLog
from echogate.bundled.http_log import HttpLog
from echogate.bundled.prometheus import Prometheus
from echogate.bundled.proxy_cache import ProxyCache
from echogate.bundled.rate_limiting import RateLimiting

fileLog = FileLog()
httpLog = HttpLog()
proxyCache = ProxyCache()
prometheus = Prometheus()
rateLimiting = RateLimiting()
