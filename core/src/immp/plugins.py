"""
Plugin discovery: find installed plugs and hooks through the ``immp`` entry point group, and
turn a config ``path`` (a registered short name or a dotted ``package.module.Class``) into a
class.

pluggy is the dispatcher: entry points are loaded with ``load_setuptools_entrypoints("immp")``
and the hookspecs are called as ``manager.hook.register_plugs(register=...)``, so every
implementation pluggy accepts works (``specname=``, ``tryfirst``/``trylast``, wrappers, objects
added with ``manager.register(obj)``). To say which distribution registered which name, each
implementation is wrapped, once, so that ``register`` knows whose implementation is running.

A distribution may register a class by its dotted path (a string) instead of the class: it is
imported the first time a config uses it, so that every ``immp`` start does not pay for
importing every installed plugin (the IRC plug's libraries alone take about 80 ms).
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import inspect
from dataclasses import dataclass, field

import pluggy

from . import hookspecs
from ._errors import ConfigError, describe_error
from ._hook import Hook
from ._plug import Plug

LOCAL = "(local)"


@dataclass
class Registered:
    """What one installed distribution registered."""

    distribution: str
    version: str
    plugs: list[str] = field(default_factory=list)
    hooks: list[str] = field(default_factory=list)
    #: Store URL schemes (``register_stores``).
    stores: list[str] = field(default_factory=list)


@dataclass
class Broken:
    """An entry point whose module failed to import: its names are unavailable."""

    distribution: str
    version: str
    entry_point: str  # ``name = module`` as declared
    module: str
    error: str  # one line

    def __str__(self) -> str:
        return (
            f"plugin distribution {self.distribution} {self.version} failed to import "
            f"{self.module}: {self.error}"
        )


class Plugins:
    """
    The registry of short names, filled from installed distributions by pluggy.

    Raises :class:`~immp.ConfigError` when two distributions register the same short name (or
    declare the same entry point name). An entry point whose module fails to import is kept
    in :attr:`broken` instead: the rest works, and :meth:`resolve` names it when a config asks
    for something only it could have provided.
    """

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
        #: Entry points that failed to import.
        self.broken: list[Broken] = []
        # plugin object -> (distribution, version), for what was added without an entry point
        self._local: dict[int, tuple[str, str]] = {}
        if discover:
            self._load_entry_points()
        self.collect()

    # -- loading --------------------------------------------------------------------------------

    def _load_entry_points(self) -> None:
        declared = list(_entry_points())
        try:
            self.manager.load_setuptools_entrypoints("immp")
        except Exception:
            self._load_one_by_one(declared)
        # pluggy loads the first of two entry points with one name and skips the other.
        loaded = {
            self.manager.get_name(plugin): dist.metadata["name"]
            for plugin, dist in self.manager.list_plugin_distinfo()
        }
        for dist, ep in declared:
            first, name = loaded.get(ep.name), dist.metadata["name"]
            if first is not None and first != name:
                raise ConfigError(
                    f"the plugin entry point {ep.name!r} is declared by both {first} and "
                    f"{name}; uninstall one"
                )

    def _load_one_by_one(self, declared) -> None:
        """One entry point failed: load them one by one, so that the others still count."""
        for dist, ep in declared:
            if self.manager.has_plugin(ep.name) or self.manager.is_blocked(ep.name):
                continue
            try:
                self.manager.load_setuptools_entrypoints("immp", name=ep.name)
            except Exception as exc:
                self.manager.set_blocked(ep.name)
                self.broken.append(
                    Broken(
                        dist.metadata["name"],
                        dist.version,
                        f"{ep.name} = {ep.value}",
                        ep.value.partition(":")[0],
                        describe_error(exc, 300),
                    )
                )

    def add(self, module: object, distribution: str = LOCAL, version: str = "") -> None:
        """
        Register a module (or any object) that implements the hookspecs without an entry
        point, as if ``distribution`` had installed it, and collect the names again.
        """
        self.manager.register(module)
        self._local[id(module)] = (distribution, version)
        self.collect()

    # -- collecting -----------------------------------------------------------------------------

    def collect(self) -> None:
        """
        Call the hookspecs through pluggy and rebuild the tables of names from what every
        implementation registered. Call it again after ``manager.register(obj)``.
        """
        owners = self._owners()
        for spec in ("register_plugs", "register_hooks", "register_stores"):
            for impl in getattr(self.manager.hook, spec).get_hookimpls():
                _attribute(impl, owners.get(id(impl.plugin), (LOCAL, "")))
        self.plugs, self.hooks, self.aliases, self.stores = {}, {}, {}, {}
        entries: dict[tuple[str, str], Registered] = {}
        for dist, version in owners.values():
            entries.setdefault((dist, version), Registered(dist, version))
        claimed: dict[str, Registered] = {}

        def registrar(names, listed_attr):
            def register(name: str, cls: type | str, aliases=()) -> None:
                owner = _current.owner or (LOCAL, "")
                entry = entries.setdefault(owner, Registered(*owner))
                previous = claimed.get(f"{listed_attr}:{name}")
                if previous is not None and previous is not entry:
                    first, second = sorted((previous.distribution, entry.distribution))
                    raise ConfigError(
                        f"the {listed_attr[:-1]} name {name!r} is registered by both "
                        f"{first} and {second}; uninstall one"
                    )
                claimed[f"{listed_attr}:{name}"] = entry
                names[name] = cls
                listed = getattr(entry, listed_attr)
                if name not in listed:
                    listed.append(name)
                self.aliases.update(dict.fromkeys(aliases, cls))

            return register

        self.manager.hook.register_plugs(register=registrar(self.plugs, "plugs"))
        self.manager.hook.register_hooks(register=registrar(self.hooks, "hooks"))
        self.manager.hook.register_stores(register=registrar(self.stores, "stores"))
        self.distributions = list(entries.values())

    def _owners(self) -> dict[int, tuple[str, str]]:
        owners = dict(self._local)
        for plugin, dist in self.manager.list_plugin_distinfo():
            owners[id(plugin)] = (dist.metadata["name"], dist.version)
        return owners

    # -- using ----------------------------------------------------------------------------------

    def resolve(self, path: str, kind: type[Plug] | type[Hook], key: str) -> type:
        """
        The class for a config ``path``; ``kind`` is :class:`Plug` or :class:`Hook` and ``key``
        the config key path, for the error.
        """
        names = self.plugs if kind is Plug else self.hooks
        cls = names.get(path) or self.aliases.get(path)
        if isinstance(cls, str):
            # Registered by dotted path: import it now, once.
            dotted, cls = cls, _import(cls, key, self._owner_of(cls))
            for table in (self.plugs, self.hooks, self.aliases):
                for name, value in table.items():
                    if value == dotted:
                        table[name] = cls
        elif cls is None and "." in path:
            broken = self._broken_for(path)
            if broken is not None:
                raise ConfigError(f"{kind.__name__.lower()} {path!r}: {broken}", key)
            cls = _import(path, key)
        if cls is None:
            known = ", ".join(sorted(names)) or "none installed"
            message = (
                f"unknown {kind.__name__.lower()} {path!r} (installed: {known}; "
                "or give a dotted path package.module.Class)"
            )
            broken = self._broken_for(path)
            if broken is not None:
                message = f"{kind.__name__.lower()} {path!r}: {broken}"
            elif self.broken:
                message += "; " + "; ".join(str(b) for b in self.broken)
            raise ConfigError(message, key)
        if not (isinstance(cls, type) and issubclass(cls, kind)):
            raise ConfigError(f"{path!r} is not a {kind.__name__} class", key)
        return cls

    def _broken_for(self, path: str) -> Broken | None:
        """The broken entry point that ``path`` most likely needed, if one fits."""
        for broken in self.broken:
            name = broken.entry_point.partition(" = ")[0]
            module = broken.module
            if path == name or path.startswith(module + ".") or path == module:
                return broken
        return None

    def _owner_of(self, dotted: str) -> str | None:
        for entry in self.distributions:
            for name in (*entry.plugs, *entry.hooks):
                if self.plugs.get(name) == dotted or self.hooks.get(name) == dotted:
                    return entry.distribution
        return None

    def name_of(self, cls: type) -> str:
        """The short name a class is registered under, else its dotted path."""
        dotted = f"{cls.__module__}.{cls.__qualname__}"
        for names in (self.plugs, self.hooks):
            for name, known in names.items():
                if known is cls or known == dotted:
                    return name
        return dotted


class _Current:
    """Whose hook implementation is running, while ``register`` calls come in."""

    owner: tuple[str, str] | None = None


_current = _Current()


def _attribute(impl: pluggy.HookImpl, owner: tuple[str, str]) -> None:
    """Wrap an implementation once so that what it registers is credited to ``owner``."""
    function = impl.function
    if getattr(function, "_immp_owner", None) is not None:
        function._immp_owner[0] = owner
        return
    holder = [owner]

    if inspect.isgeneratorfunction(function):  # a wrapper: credit each step of it

        @functools.wraps(function)
        def wrapped(*args):
            inner = function(*args)
            step, arg = inner.send, None
            while True:
                previous, _current.owner = _current.owner, holder[0]
                try:
                    value = step(arg)
                except StopIteration as stop:
                    return stop.value
                finally:
                    _current.owner = previous
                try:
                    step, arg = inner.send, (yield value)
                except BaseException as exc:  # pluggy throws the inner calls' error in
                    step, arg = inner.throw, exc

    else:

        @functools.wraps(function)
        def wrapped(*args):
            previous, _current.owner = _current.owner, holder[0]
            try:
                return function(*args)
            finally:
                _current.owner = previous

    wrapped._immp_owner = holder
    impl.function = wrapped


def _entry_points():
    """Every ``(distribution, entry point)`` of the group ``immp``, as pluggy finds them."""
    for dist in list(importlib.metadata.distributions()):
        for ep in dist.entry_points:
            if ep.group == "immp":
                yield dist, ep


def _import(path: str, key: str, distribution: str | None = None) -> type:
    module_name, _, attr = path.rpartition(".")
    by = f" (registered by {distribution})" if distribution else ""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ConfigError(f"cannot import {path!r}{by}: no module named {exc.name!r}", key)
        raise ConfigError(f"cannot import {path!r}{by}: {exc}", key)
    except Exception as exc:
        raise ConfigError(f"cannot import {path!r}{by}: {describe_error(exc, 300)}", key)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(
            f"cannot import {path!r}{by}: module {module_name!r} has no {attr!r}", key
        )
