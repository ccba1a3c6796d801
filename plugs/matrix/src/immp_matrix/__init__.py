"""IMMP Matrix plug: the client-server API on trio. See :mod:`immp_matrix.plug` for its config."""

__all__ = ["MatrixPlug"]


def __getattr__(name: str):
    # Imported on first use: plugin discovery imports this package on every ``immp`` start,
    # and httpx takes a while to import.
    if name == "MatrixPlug":
        from .plug import MatrixPlug

        return MatrixPlug
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
