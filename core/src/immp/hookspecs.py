"""
The plugin contract, declared with pluggy.

A distribution that adds plugs or hooks declares an entry point in the group ``immp``::

    [project.entry-points.immp]
    myplugin = "my_package.plugin"

and that module implements any of the hooks below with ``@immp.hookimpl``. The names it
registers can then be used as ``path`` in a config file (``path: mything``).

pluggy calls them (``manager.hook.register_plugs(register=...)``), so everything pluggy offers
works: ``@immp.hookimpl(specname="register_plugs")`` on a function of another name,
``tryfirst``/``trylast``, wrappers, and objects registered with ``manager.register(obj)``.
Two distributions registering one name is an error (``immp`` exits 2 naming both); a module
that fails to import makes only the configs that use it fail.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

hookspec = pluggy.HookspecMarker("immp")
hookimpl = pluggy.HookimplMarker("immp")

#: ``register(name, cls, aliases=())``: make ``cls`` available as ``path: name`` in config;
#: ``aliases`` are further paths that mean the same class (e.g. the original IMMP class path).
#: ``cls`` may be the class's dotted path (``"package.module.Class"``, the module it is defined
#: in) instead: it is then imported only when a config uses it, for a plugin whose imports are
#: slow (keep the package's ``__init__`` from importing it too).
Register = Callable[..., None]


@hookspec
def register_plugs(register: Register) -> None:
    """
    Called once when plugins are discovered. Call ``register("short-name", PlugClass)`` for each
    :class:`~immp.Plug` subclass the distribution provides. Return nothing.
    """


@hookspec
def register_hooks(register: Register) -> None:
    """
    Called once when plugins are discovered. Call ``register("short-name", HookClass)`` for each
    :class:`~immp.Hook` (or :class:`~immp.ResourceHook`) subclass the distribution provides.
    Return nothing.
    """


@hookspec
def register_stores(register: Register) -> None:
    """
    Called once when plugins are discovered. Call ``register("scheme", StoreClass)`` for each
    :class:`~immp.Store` backend the distribution provides: a ``store:`` URL with that scheme
    (``postgresql://...``) is built with ``StoreClass.from_url(url, base, **options)``. As for
    plugs, the class may be given by its dotted path. ``sqlite`` and ``memory`` are built in.
    Return nothing.
    """
