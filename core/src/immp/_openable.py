"""
What plugs and hooks share: a name, a validated config, where they are in their lifetime
(``open_state``), their area in the store (``state``) and a lifetime nursery.
"""

from __future__ import annotations

import copy
import enum
import logging
from typing import TYPE_CHECKING, Any, ClassVar

import trio

from ._schema import Schema
from ._store import State

if TYPE_CHECKING:
    from ._host import Host


class OpenState(enum.Enum):
    """Where a plug or hook is in its lifetime."""

    disabled = "disabled"  # configured with enabled: false, or disabled at runtime
    inactive = "inactive"  # added but not (yet) opened
    starting = "starting"
    active = "active"
    stopping = "stopping"
    failed = "failed"  # open() raised or timed out, or a background task crashed


class Openable:
    """
    Base of :class:`~immp.Plug` and :class:`~immp.Hook`.

    Subclasses set ``schema`` (a :class:`~immp.Schema` or plain spec for their ``config``) and
    override :meth:`open` and :meth:`close`. While open, :attr:`nursery` is a nursery owned by this
    object's lifetime: start background tasks (readers, timers) there and they are cancelled when
    the object is closed or removed.
    """

    schema: ClassVar[Schema | dict | None] = None

    def __init__(self, name: str, config: dict[str, Any] | None, host: Host):
        self.name = name
        self.host = host
        #: The config as given, before defaults: ``immp -w`` writes back what was set, so that
        #: an option nobody wrote that still holds its default stays out of the file.
        self.given_config: dict[str, Any] = copy.deepcopy(config) if config else {}
        self.config = self.validate_config(config)
        self.open_state = OpenState.inactive
        #: This object's own key-value area in ``host.store`` (see :class:`~immp.State`).
        self.state = State(self)
        self.log = logging.getLogger(f"{type(self).__module__}.{type(self).__qualname__}.{name}")
        # The config path this object was created from (short name or dotted path); kept so
        # that a written-back config says the same thing the user wrote.
        self.path: str | None = None

    @classmethod
    def validate_config(cls, config: Any, path: str = "config", refs=None) -> dict[str, Any]:
        """Validate ``config`` against the class schema; returns it with defaults filled in."""
        if cls.schema is None:
            return dict(config or {})
        schema = cls.schema if isinstance(cls.schema, Schema) else Schema(cls.schema)
        return schema.validate(config if config is not None else {}, path, refs)

    @property
    def open_state(self) -> OpenState:
        """Where this object is in its lifetime."""
        return self._open_state

    @open_state.setter
    def open_state(self, value: OpenState) -> None:
        self._open_state = value
        # The host caches which hooks run where, and tells observers about connections.
        if self.host is not None:
            self.host.state_changed(self)

    @property
    def nursery(self) -> trio.Nursery:
        """
        The nursery of this object's lifetime, for its background tasks; only while it is
        open (from the start of :meth:`open` until :meth:`close` has returned, after which
        what runs in it is cancelled). Raises ``RuntimeError`` otherwise.
        """
        nursery = self.host.nursery_of(self) if self.host is not None else None
        if nursery is None:
            raise RuntimeError(f"{self.name} is not open")
        return nursery

    @property
    def enabled(self) -> bool:
        return self.open_state is not OpenState.disabled

    async def open(self) -> None:
        """Connect and start background tasks in :attr:`nursery`. Raise to fail."""

    async def close(self) -> None:
        """Disconnect politely. Background tasks are cancelled after this returns."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.open_state.value}>"
