"""Scale-out tests: the app through a real PgBouncer, and PostgreSQL over verified TLS."""
