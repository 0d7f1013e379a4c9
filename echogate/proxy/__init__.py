"""
The data path: the listener, the Gateway resource and its plugin runner,
the forwarding policy, response streaming, and the live configuration
snapshot requests are matched against.
"""
