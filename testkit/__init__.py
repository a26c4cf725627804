"""What the tests and the benchmarks share, kept out of the vaultd wheel: real stand-ins for the
services vaultd talks to (Redis, the KMS providers, TLS material), the one way to run a vaultd
in-process (running.py), and the Redis database each suite owns (redis_dbs.py).

A top-level package beside vaultd/ rather than inside tests/, so bench/ can import it without
importing the test suites, and tests import helpers from here rather than from conftest files.
pyproject.toml's package discovery names only vaultd* and providers*, so it is never shipped.
"""
