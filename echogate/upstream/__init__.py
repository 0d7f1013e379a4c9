"""
Talking to services: echogate's lean HTTP/1.1 client (the default), the
Agent-based client, their deadlines, endpoints and failure answers, and
the hop-by-hop rules both directions share.
"""
