"""
Tests for L{echogate.balancer}.
"""
