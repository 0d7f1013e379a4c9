"""
Routing: the router compiled from a snapshot's routes, how one route
matches (hosts, paths, methods, headers), and path normalisation.
"""
