"""A bounded mapping: what IMMP keeps "recently" (echoes, titles, routes, names) without growing."""

from __future__ import annotations

from collections import OrderedDict
from itertools import islice
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


def trim(mapping: dict, size: int) -> None:
    """
    Forget the oldest-added entries of a plain dict (which keeps insertion order) so that it
    holds at most ``size - size // 16``; also ``immp.BoundedCache.trim``. For the hottest
    histories, which call it inline when an addition took them past ``size`` (``if len(d) >
    size: trim(d, size)``): that saves :class:`BoundedCache`'s method call per addition, and
    forgetting is paid once per ``size // 16`` additions. Such a history holds between fifteen
    sixteenths of ``size`` and ``size``.
    """
    keep = size - size // 16
    for key in list(islice(mapping, len(mapping) - keep)):
        del mapping[key]


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

    #: :func:`trim`, for a plug's hot history kept in a plain dict.
    trim = staticmethod(trim)
