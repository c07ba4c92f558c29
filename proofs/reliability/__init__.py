"""The reliability suite: faults under load on a throwaway PostgreSQL cluster and the real server."""
