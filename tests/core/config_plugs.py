"""Plugs with schema warnings, for the config tests (loaded by dotted path)."""

import immp


def _prefixed(source: str) -> str | None:
    return None if source.startswith("#") else "no '#': this is a private chat"


class WarningPlug(immp.Plug):
    """A plug whose channel sources should start with '#', and whose ``size`` should be even."""

    source_schema = immp.Warn(str, _prefixed)
    schema = immp.Schema({
        immp.Optional("size", 2, doc="an even number"): immp.Warn(
            int, lambda n: "size is odd" if n % 2 else None
        ),
    })  # fmt: skip
