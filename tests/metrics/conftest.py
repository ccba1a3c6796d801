"""Fixtures of the metrics tests: the IRC tests' ngircd fixtures, shared here."""

from tests.irc.conftest import ngircd_available, server  # noqa: F401  (fixtures)
