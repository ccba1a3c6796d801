"""
Plugin discovery: find installed plugs and hooks through the ``immp`` entry point group, and
turn a config ``path`` (a registered short name or a dotted ``package.module.Class``) into a
class.

A distribution may register a class by its dotted path (a string) instead of the class: it is
imported the first time a config uses it, so that every ``immp`` start does not pay for
importing every installed plugin (the IRC plug's libraries alone take about 80 ms).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import pluggy

from . import hookspecs
from ._errors import ConfigError
from ._hook import Hook
from ._plug import Plug


@dataclass
class Registered:
    """What one installed distribution registered."""

    distribution: str
    version: str
    plugs: list[str] = field(default_factory=list)
    hooks: list[str] = field(default_factory=list)


class Plugins:
    """The registry of short names, filled from installed distributions by pluggy."""

    def __init__(self, *, discover: bool = True):
        self.manager = pluggy.PluginManager("immp")
        self.manager.add_hookspecs(hookspecs)
        # name -> the class, or its dotted path until first used
        self.plugs: dict[str, type[Plug] | str] = {}
        self.hooks: dict[str, type[Hook] | str] = {}
        self.aliases: dict[str, type | str] = {}
        #: URL scheme -> store class (or its dotted path), from ``register_stores``.
        self.stores: dict[str, type | str] = {}
        self.distributions: list[Registered] = []
        if discover:
            self.manager.load_setuptools_entrypoints("immp")
            for plugin, dist in self.manager.list_plugin_distinfo():
                entry = Registered(dist.metadata["name"], dist.version)
                self._collect(plugin, entry)
                self.distributions.append(entry)
            self._collect_stores()

    def add(self, module: object, distribution: str = "(local)", version: str = "") -> None:
        """Register a module that implements the hookspecs without an entry point."""
        self.manager.register(module)
        entry = Registered(distribution, version)
        self._collect(module, entry)
        self.distributions.append(entry)
        self._collect_stores()

    def _collect_stores(self) -> None:
        self.manager.hook.register_stores(register=self.stores.__setitem__)

    def _collect(self, plugin: object, entry: Registered) -> None:
        for spec, names, listed in (
            ("register_plugs", self.plugs, entry.plugs),
            ("register_hooks", self.hooks, entry.hooks),
        ):

            def register(name: str, cls: type | str, aliases=(), names=names, listed=listed):
                names[name] = cls
                listed.append(name)
                self.aliases.update(dict.fromkeys(aliases, cls))

            impl = getattr(plugin, spec, None)
            if impl is not None:
                impl(register=register)

    def resolve(self, path: str, kind: type[Plug] | type[Hook], key: str) -> type:
        """
        The class for a config ``path``; ``kind`` is :class:`Plug` or :class:`Hook` and ``key``
        the config key path, for the error.
        """
        names = self.plugs if kind is Plug else self.hooks
        cls = names.get(path) or self.aliases.get(path)
        if isinstance(cls, str):
            # Registered by dotted path: import it now, once.
            dotted, cls = cls, _import(cls, key)
            for table in (self.plugs, self.hooks, self.aliases):
                for name, value in table.items():
                    if value == dotted:
                        table[name] = cls
        elif cls is None and "." in path:
            cls = _import(path, key)
        if cls is None:
            known = ", ".join(sorted(names)) or "none installed"
            raise ConfigError(
                f"unknown {kind.__name__.lower()} {path!r} (installed: {known}; "
                "or give a dotted path package.module.Class)",
                key,
            )
        if not (isinstance(cls, type) and issubclass(cls, kind)):
            raise ConfigError(f"{path!r} is not a {kind.__name__} class", key)
        return cls

    def name_of(self, cls: type) -> str:
        """The short name a class is registered under, else its dotted path."""
        dotted = f"{cls.__module__}.{cls.__qualname__}"
        for names in (self.plugs, self.hooks):
            for name, known in names.items():
                if known is cls or known == dotted:
                    return name
        return dotted


def _import(path: str, key: str) -> type:
    module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ConfigError(f"cannot import {path!r}: no module named {exc.name!r}", key)
        raise ConfigError(f"cannot import {path!r}: {exc}", key)
    except Exception as exc:
        raise ConfigError(f"cannot import {path!r}: {type(exc).__name__}: {exc}", key)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"cannot import {path!r}: module {module_name!r} has no {attr!r}", key)
