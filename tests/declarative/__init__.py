"""
Tests for L{echogate.declarative}.
"""
