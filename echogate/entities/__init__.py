"""
The entity model: the schemas of services, routes, consumers, plugins
and credentials (with Kong's on-write steps and password hashing), host
parsing, and records built for writes without the Admin API.
"""
