"""Plugins bundled with echogate (exposed through twisted/plugins/echogate_bundled.py)."""
