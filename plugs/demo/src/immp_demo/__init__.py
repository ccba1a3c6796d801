"""IMMP demo plug: a plug with no outside network, for trying things and for tests."""

from .plug import DemoPlug

__all__ = ["DemoPlug"]
