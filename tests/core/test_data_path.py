"""docs/data-path.md names real functions: each ``Class.method`` it quotes exists."""

from __future__ import annotations

import importlib
import re

from ..conftest import ROOT

MODULES = [
    "immp._channel", "immp._host", "immp._message", "immp._pipeline", "immp._plug",
    "immp._worker", "immp_irc.connection", "immp_irc.outgoing", "immp_irc.plug",
    "immp_sync._bridge", "immp_sync._copies", "immp_sync._sync",
]  # fmt: skip


def test_every_method_the_data_path_names_exists():
    classes: dict[str, type] = {}
    for name in MODULES:
        for value in vars(importlib.import_module(name)).values():
            if isinstance(value, type):
                classes.setdefault(value.__name__, value)
    text = (ROOT / "docs" / "data-path.md").read_text()
    quoted = {m for code in re.findall(r"`([^`]+)`", text)
              for m in re.findall(r"\b([A-Z]\w+)\.(\w+)\b", code)}  # fmt: skip
    assert len(quoted) > 20  # the doc is read, not skipped
    missing = sorted(
        f"{cls}.{attr}"
        for cls, attr in quoted
        if cls not in classes or not hasattr(classes[cls], attr)
    )
    assert missing == []
