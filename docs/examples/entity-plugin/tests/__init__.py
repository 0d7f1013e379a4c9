"""
The token-auth example's own tests: C{PYTHONPATH=. trial tests} here.
"""
