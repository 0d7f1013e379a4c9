"""
echogate's bundled authentication and access-control plugins, as a
twisted.plugin drop-in (found by C{getPlugins(IGatewayPlugin)}): key-auth,
basic-auth, jwt, acl and ip-restriction.
"""
from echogate.bundled.acl import ACL
from echogate.bundled.basic_auth import BasicAuth
from echogate.bundled.ip_restriction import IPRestriction
from echogate.bundled.jwt_auth import JWTAuth
from echogate.bundled.key_auth import KeyAuth

keyAuth = KeyAuth()
basicAuth = BasicAuth()
jwtAuth = JWTAuth()
acl = ACL()
ipRestriction = IPRestriction()
