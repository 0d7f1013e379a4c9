"""
The plugin development kit: what a plugin phase receives (the request
context and its plugin view, the request and response messages, body
parsing, the consumer and credential index). Public API; see
docs/plugin-api.md.
"""
