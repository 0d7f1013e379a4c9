"""
The gateway plugins bundled with echogate, as a twisted.plugin drop-in
(found by C{getPlugins(IGatewayPlugin)}).
"""
from echogate.bundled.header_echo import HeaderEcho

headerEcho = HeaderEcho()
