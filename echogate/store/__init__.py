"""
PostgreSQL: the store behind the Admin API and the live configuration,
its connections and driver, migrations, and the embedded server.
"""
