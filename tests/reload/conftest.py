"""The reload tests use the IRC suite's real ngircd."""

from tests.irc.conftest import ngircd_available, server  # noqa: F401  (fixtures)
