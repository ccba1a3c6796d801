"""IMMP IRC plug: a robust IRC client on trio. See :mod:`immp_irc.plug` for its config."""

__all__ = ["IRCPlug"]


def __getattr__(name: str):
    # Imported on first use: plugin discovery imports this package on every ``immp`` start,
    # and the IRC libraries take about 80 ms to import.
    if name == "IRCPlug":
        from .plug import IRCPlug

        return IRCPlug
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
