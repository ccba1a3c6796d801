"""
Declaring bot commands. Any hook can offer commands by decorating methods; the commands hook
(``immp-hook-commands``) finds them, checks scope and permission, and dispatches::

    class MyHook(immp.Hook):
        @immp.command("roll", parser=immp.CommandParser.spaces)
        async def roll(self, msg, sides="6"):
            \"\"\"Roll a die with the given number of sides.\"\"\"
            await msg.channel.send(immp.Message(str(random.randint(1, int(sides)))))

The docstring is the help text; the signature (after ``self`` and ``msg``) gives the usage line:
``<required> [optional] [rest...]``.
"""

from __future__ import annotations

import enum
import functools
import inspect
import logging
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._message import RichText

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from ._hook import Hook
    from ._message import SentMessage


class CommandParser(enum.Enum):
    """How the text after the command name becomes arguments."""

    spaces = "spaces"  # split on white space: each word a str
    shlex = "shlex"  # shell-like quoting: "two words" is one str
    none = "none"  # the whole rest as one RichText (formatting kept)
    hybrid = "hybrid"  # words for all but the last parameter, the rest as RichText


class CommandScope(enum.Enum):
    """Where a command may be used."""

    anywhere = "anywhere"
    private = "private"
    shared = "shared"


class CommandRole(enum.Enum):
    """Who may use a command."""

    anyone = "anyone"
    admin = "admin"


class CommandUsageError(ValueError):
    """
    The arguments do not fit the command. ``str(exc)`` says how, with the usage line; ``reason``
    is the same without the usage line (``"missing <sides>"``, ``"No closing quotation"``), for a
    caller that shows the usage line its own way (e.g. with the command prefix).
    """

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class CommandSpec:
    """What :func:`command` records on a method."""

    name: str
    func: Callable
    parser: CommandParser
    scope: CommandScope
    role: CommandRole
    test: Callable | None
    sync_aware: bool

    @property
    def doc(self) -> str:
        return inspect.cleandoc(self.func.__doc__ or "").strip()

    def _params(self) -> list[inspect.Parameter]:
        return list(inspect.signature(self.func).parameters.values())[2:]  # skip self, msg

    @property
    def usage(self) -> str:
        parts = []
        for param in self._params():
            name = param.name.replace("_", "-")
            if param.kind is param.VAR_POSITIONAL:
                parts.append(f"[{name}...]")
            elif param.default is param.empty:
                parts.append(f"<{name}>")
            else:
                parts.append(f"[{name}]")
        return " ".join([self.name, *parts])

    def parse(self, rest: RichText) -> list[Any]:
        """Split the text after the command name into arguments; raises CommandUsageError."""
        params = self._params()
        required = sum(1 for p in params if p.kind is not p.VAR_POSITIONAL and p.default is p.empty)
        fixed = [p for p in params if p.kind is not p.VAR_POSITIONAL]
        varargs = len(fixed) != len(params)
        plain = str(rest)
        if self.parser is CommandParser.none:
            args: list[Any] = [rest.strip()] if plain.strip() else []
        elif self.parser is CommandParser.hybrid and fixed:
            args = _split_hybrid(rest, len(fixed) - 1)
        elif self.parser is CommandParser.shlex:
            try:
                args = shlex.split(plain)
            except ValueError as exc:
                raise CommandUsageError(f"{exc}: usage: {self.usage}", str(exc))
        else:
            args = plain.split()
        if len(args) < required:
            missing = " ".join(f"<{p.name.replace('_', '-')}>" for p in fixed[len(args) : required])
            raise CommandUsageError(f"missing {missing}: usage: {self.usage}", f"missing {missing}")
        if not varargs and len(args) > len(fixed):
            raise CommandUsageError(
                f"too many arguments: usage: {self.usage}", "too many arguments"
            )
        return args


def _split_hybrid(rest: RichText, words: int) -> list[Any]:
    text = str(rest)
    args: list[Any] = []
    pos = 0
    for _ in range(words):
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return args
        end = pos
        while end < len(text) and not text[end].isspace():
            end += 1
        args.append(text[pos:end])
        pos = end
    tail = rest[pos:].strip()
    if tail:
        args.append(tail)
    return args


def command(
    name: str,
    parser: CommandParser = CommandParser.spaces,
    scope: CommandScope = CommandScope.anywhere,
    role: CommandRole = CommandRole.anyone,
    test: Callable[[Hook, SentMessage], bool] | None = None,
    sync_aware: bool = False,
) -> Callable[[Callable], Callable]:
    """
    Mark a hook method as the bot command ``name``. ``test(hook, msg)`` may hide the command
    where it makes no sense; ``sync_aware`` commands also see bridged copies of the message.
    """

    def mark(func: Callable) -> Callable:
        func._immp_command = CommandSpec(name, func, parser, scope, role, test, sync_aware)
        return func

    return mark


@dataclass(frozen=True)
class BoundCommand:
    """A command of one hook instance: call it with the message and parsed arguments."""

    hook: Hook
    spec: CommandSpec

    @property
    def name(self) -> str:
        return self.spec.name

    async def applicable(self, msg: SentMessage) -> bool:
        """
        Whether the command makes sense for ``msg``: its ``test`` (a plain or an async function)
        says yes. A test that raises says no, and is logged with the command and hook names.
        """
        if self.spec.test is None:
            return True
        try:
            result = self.spec.test(self.hook, msg)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            log.warning("Test of command %s (hook %s) failed: %s", self.name, self.hook.name, exc)
            return False
        return bool(result)

    async def __call__(self, msg: SentMessage, *args: Any) -> Any:
        return await self.spec.func(self.hook, msg, *args)


def commands_of(hook: Hook) -> dict[str, BoundCommand]:
    """Every command a hook declares, by name."""
    return {name: BoundCommand(hook, spec) for name, spec in _specs_of(type(hook)).items()}


@functools.cache
def _specs_of(klass: type) -> dict[str, CommandSpec]:
    # Per class, once: the commands hook asks for every open hook's commands per command line.
    found: dict[str, CommandSpec] = {}
    for base in reversed(klass.__mro__):
        for value in vars(base).values():
            spec = getattr(value, "_immp_command", None)
            if isinstance(spec, CommandSpec):
                found[spec.name] = spec
    return found
