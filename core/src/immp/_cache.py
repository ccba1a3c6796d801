"""A bounded mapping: what IMMP keeps "recently" (echoes, titles, routes, names) without growing."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(OrderedDict, Generic[K, V]):
    """
    A dict that holds at most ``size`` entries: adding one more forgets the oldest added (first
    in, first out; reading does not refresh an entry). Every dict operation works; ``size``
    may be changed (it takes effect at the next addition).
    """

    def __init__(self, size: int):
        super().__init__()
        if size < 1:
            raise ValueError(f"a BoundedCache holds at least one entry, not {size}")
        self.size = size

    # On the hot path (every send records its echoes here): no super(), no loop unless the
    # size was lowered.
    def __setitem__(self, key: K, value: V, _set=OrderedDict.__setitem__) -> None:
        _set(self, key, value)
        if len(self) > self.size:
            self.popitem(last=False)
            while len(self) > self.size:
                self.popitem(last=False)
