"""
The drop-in: makes the introspection plugin known to C{getPlugins}.
"""
from introspection import Introspection

introspection = Introspection()
