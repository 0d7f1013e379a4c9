"""
echogate: an API gateway in the spirit of Kong, on Twisted.
"""
from echogate._version import __version__

__all__ = ["__version__"]
