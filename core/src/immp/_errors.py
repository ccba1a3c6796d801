"""Errors raised by IMMP and its plugins."""


class _AtKey:
    """What a config error and a config warning share: a message about one key of one file."""

    def __init__(self, message: str, path: str | None = None, file: str | None = None):
        super().__init__(message)
        self.message = message
        self.path = path
        self.file = file

    def __str__(self) -> str:
        where = ": ".join(part for part in (self.file, self.path) if part)
        return f"{where}: {self.message}" if where else self.message


class ConfigError(_AtKey, Exception):
    """
    The configuration is wrong: a missing or mistyped key, a reference to something that does
    not exist, a duplicate name. ``str()`` of it is one line meant for the user; ``path`` holds
    the key path (``hooks.sync.config.channels.main[1]``) and ``file`` the config file, when
    known.
    """


class ConfigWarning(_AtKey, UserWarning):
    """
    Something in the configuration that is legal but most likely a mistake (an IRC channel
    source without a channel prefix is a private chat). ``immp --check`` and the start print it
    as one line, formatted like :class:`ConfigError`; it does not stop anything.
    """


class PlugError(Exception):
    """A plug failed to talk to its network, or was asked for something it cannot do."""


class SendRefused(PlugError):
    """
    The network refused one message for good: the bot may not post there, the message is too
    large, the network rejects its content. Sending it again would be refused again, so under the
    journal its delivery is given up (marked done, counted as ``refused``) instead of being kept
    for the next start; an outage, an expired login or a rate limit is a plain
    :class:`PlugError` (or the plug waits it out). A plug raises it from ``put``.
    """


def describe_error(exc: BaseException, limit: int | None = None) -> str:
    """
    One line for a log or a user: ``Type: message``, looking inside single-exception groups
    (what a nursery raises around one failure) and adding the cause in brackets (trio wraps a
    TLS failure in ``BrokenResourceError``), unless the cause only repeats the message (httpx
    wraps httpcore's ``ConnectError`` in its own, with the same words). Whitespace is folded;
    ``limit`` cuts it to that many characters with an ellipsis.
    """
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    text = " ".join(str(exc).split())
    out = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    cause = exc.__cause__
    if cause is not None and " ".join(str(cause).split()) != text:
        out += f" ({describe_error(cause)})"
    if limit is not None and len(out) > limit:
        out = out[: limit - 1] + "…"
    return out
