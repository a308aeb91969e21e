"""Database access: the embedded cluster, engines, migrations and the session scope."""
