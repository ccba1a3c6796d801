"""IMMP IRC plug: a robust IRC client on trio. See :mod:`immp_irc.plug` for its config."""

from .plug import IRCPlug

__all__ = ["IRCPlug"]
