"""The minutes-long, root-only proofs (each started by `make <name>-test`), apart from the unit tests."""
