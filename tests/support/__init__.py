"""Helpers shared by the test suites: real stand-ins for the services vaultd talks to."""
