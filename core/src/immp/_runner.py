"""
The ``immp`` command: ``immp [-w] CONFIG`` runs a host from a config file until SIGINT/SIGTERM.
SIGHUP reads the file again and applies what changed (:mod:`immp._config.reload`); a file with
an error changes nothing and is one log line.

Exit status: 0 after a clean shutdown, 1 if the host failed at runtime, 2 for a config or usage
error (one line on stderr naming the file and key, no traceback), 128+N after a second signal N.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import logging.config
import os
import signal
import sys
from importlib import metadata

import trio

from ._config import (
    build_host,
    dump_config,
    load_file,
    plan_reload,
    remove_stale_temp_files,
    write_config,
)
from ._errors import ConfigError, ConfigWarning, describe_error
from ._host import Host
from ._logs import JsonFormatter, counted
from ._openable import OpenState
from ._store import StoreError
from .plugins import Plugins

log = logging.getLogger("immp.runner")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


class LocalFilter(logging.Filter):
    """Let through records from IMMP itself and its plugins (``immp*``) and from ``__main__``."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name == "__main__" or record.name.startswith("immp")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="immp", description="Run an IMMP host from a config file (YAML, JSON or TOML)."
    )
    parser.add_argument("config", nargs="?", help="the config file")
    parser.add_argument(
        "-w",
        "--write",
        action="store_true",
        help="write the live config back to the file on change and on exit",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="validate the config (imports, schemas, references) and exit",
    )
    parser.add_argument(
        "--plugins",
        action="store_true",
        help="list installed plugin distributions and the names they register",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text lines (default), or one JSON object per line for log shippers; applies to "
        "the default handler and to every handler a logging: section configures",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    return parser


def _count(number: int, noun: str, items=None) -> str:
    """``1 plug``, ``2 plugs``, ``0 hooks``; with ``items``, ``3 plugs (1 disabled)``."""
    out = counted(number, noun)
    off = sum(1 for item in (items or {}).values() if item.open_state is OpenState.disabled)
    return f"{out} ({off} disabled)" if off else out


def _version() -> str:
    try:
        return metadata.version("immp-core")
    except metadata.PackageNotFoundError:
        return "unknown"


def _setup_logging(config: dict | None, file: str, log_format: str = "text") -> None:
    if config and log_format == "json":
        config = _with_json_formatter(config)
    if config:
        main = sys.modules.get("__main__")
        if main is not None and not hasattr(main, "LocalFilter"):
            main.LocalFilter = LocalFilter  # the seed's examples name __main__.LocalFilter
        # IMMP's loggers exist before the config is applied: keep them enabled unless asked.
        config = {"disable_existing_loggers": False, **config}
        try:
            logging.config.dictConfig(config)
        except (ValueError, TypeError, AttributeError, ImportError) as exc:
            cause = exc.__cause__ or exc
            raise ConfigError(
                f"{exc}" + (f": {cause}" if cause is not exc else ""), "logging", file
            )
        return
    # Without a logging section: startup and shutdown lines from the runner, and whatever any
    # part of IMMP says at WARNING or above.
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter()
        if log_format == "json"
        else logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"
        )
    )
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    log.setLevel(logging.INFO)


def _with_json_formatter(config: dict) -> dict:
    """A ``logging:`` section whose every handler formats with :class:`JsonFormatter`."""
    formatters = {**(config.get("formatters") or {}), "immp-json": {"()": JsonFormatter}}
    handlers = {
        name: {**handler, "formatter": "immp-json"} if isinstance(handler, dict) else handler
        for name, handler in (config.get("handlers") or {}).items()
    }
    return {**config, "formatters": formatters, "handlers": handlers}


def _distributions_in_use(host: Host) -> list[str]:
    """``name version`` of immp-core and of each distribution a plug or hook class comes from."""
    # The plugins' entry points name their packages (editable installs too) at little cost;
    # only a class from another package needs the scan of every installed file list (~50 ms).
    owners = {
        entry.module.partition(".")[0]: [entry.dist.name]
        for entry in metadata.entry_points(group="immp")
        if entry.dist is not None
    }
    tops = {type(part).__module__.partition(".")[0] for part in (*host.plugs.values(),
                                                                 *host.hooks.values())}  # fmt: skip
    if not tops <= owners.keys():
        owners = {**metadata.packages_distributions(), **owners}
    used = {"immp-core"}.union(*(owners.get(top, ()) for top in tops))
    found = []
    for name in sorted(used, key=str.lower):
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return found


def _print_warning(warning: ConfigWarning) -> None:
    print(f"immp: warning: {warning}", file=sys.stderr)


def _list_plugins(plugins: Plugins) -> int:
    if not plugins.distributions and not plugins.broken:
        print("No plugin distributions installed.")
    for entry in sorted(plugins.distributions, key=lambda e: e.distribution):
        print(f"{entry.distribution} {entry.version}")
        for label, names in (
            ("plugs", entry.plugs),
            ("hooks", entry.hooks),
            ("stores", entry.stores),
        ):
            if names:
                print(f"  {label}: {', '.join(names)}")
    for broken in plugins.broken:
        print(f"{broken.distribution} {broken.version} (broken)")
        print(f"  {broken.entry_point}: {broken.error}")
    return EXIT_OK


def _digest(path: str) -> bytes | None:
    """The file's content as a hash, or ``None`` if there is no such file."""
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).digest()
    except FileNotFoundError:
        return None


class ConfigFile:
    """
    The config file of a running ``immp``: read again on :meth:`reload` (SIGHUP, the
    ``reload`` command through :meth:`Host.reload <immp.Host.reload>`), written back by
    :meth:`save` under ``-w``.

    The rule between the two (docs/config.md, "Reloading"): IMMP remembers the file as it last
    read or wrote it (the *base*, and a hash of its bytes). ``-w`` never overwrites a file that
    changed on disk since then: the write is held back, with one warning, until a reload has
    taken the edit in; then the file's changes and the runtime ones are written together. A
    reload applies what the file changed since the base; entries the file did not change keep
    what commands changed in them at runtime.
    """

    def __init__(self, path: str, data: dict, host: Host, plugins: Plugins, *, write: bool,
                 log_format: str = "text"):  # fmt: skip
        self.path = path
        self.host = host
        self.plugins = plugins
        self.write = write
        self.log_format = log_format
        self.base = data
        self.digest = _digest(path)
        self.held = False  # a write was held back: the file changed since we last read it
        self._lock = trio.Lock()  # one reload at a time
        self._nursery: trio.Nursery | None = None

    def save(self, _source: object = None) -> bool:
        """Write the live config to the file (``-w``), unless it changed since; see above."""
        if not self.write:
            return False
        if _digest(self.path) not in (self.digest, None):
            if not self.held:
                log.warning(
                    "Not writing %s: it was changed since IMMP last read or wrote it; reload it "
                    "(SIGHUP, or the reload command) and it is written with the changes made "
                    "while running", self.path)  # fmt: skip
            self.held = True
            name = os.path.basename(self.path)
            self.host.config_unsaved = (f"{name} was changed since IMMP last read it; reload it "
                                        "(SIGHUP or the reload command)")  # fmt: skip
            return False
        try:
            write_config(self.path, dump_config(self.host, self.plugins))
            self.base, self.digest = load_file(self.path), _digest(self.path)
        except (OSError, ConfigError) as exc:
            log.error("Could not write config back to %s: %s", self.path, exc)
            self.host.config_unsaved = (
                f"could not write {os.path.basename(self.path)}: {exc} (see the log)"
            )
            return False
        self.held = False
        self.host.config_unsaved = None
        return True

    async def serve(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Own the nursery reloads run in (so that a reload outlives the command that asked)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.host.set_reloader(self.reload)
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self.host.set_reloader(None)
                self._nursery = None

    async def reload(self) -> str:
        """
        Read the file, validate it whole and apply what changed; returns one line saying what
        changed. Raises :class:`ConfigError` if the file cannot be used (nothing is changed).
        The work runs in this object's own task: cancelling the caller (a hook the reload
        restarts) does not cut the reload short.
        """
        if self._nursery is None or self.host.quitting:
            raise RuntimeError("IMMP is not running (or is shutting down)")
        done, outcome = trio.Event(), {}

        async def work() -> None:
            try:
                outcome["summary"] = await self._reload()
            except ConfigError as exc:  # logged whoever asked (SIGHUP, or !reload in a chat)
                log.error("Reload failed, nothing changed: %s", exc)
                outcome["error"] = exc
            except Exception as exc:
                outcome["error"] = exc
            finally:
                done.set()

        self._nursery.start_soon(work)
        await done.wait()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["summary"]

    async def _reload(self) -> str:
        async with self._lock:
            await self.host.ready.wait()
            digest = _digest(self.path)
            data = load_file(self.path)
            plan = plan_reload(self.host, data, self.base, file=self.path, plugins=self.plugins,
                               warn=lambda w: log.warning("%s", w))  # fmt: skip
            logging_section = data.get("logging")
            if logging_section and logging_section != self.base.get("logging"):
                _setup_logging(logging_section, self.path, self.log_format)
            await plan.apply()
            self.base, self.digest = data, digest
            summary = plan.describe()
            log.info("Reloaded %s: %s", self.path, summary)
            if not plan.empty or self.held:
                # -w writes here (the listener is save): the file's changes, and what commands
                # changed while a write was held back, even if the edit itself changed nothing
                # IMMP runs (a comment).
                self.host.config_changed(self.host)
            return summary

    async def reload_logged(self) -> None:
        """:meth:`reload`, for SIGHUP: a failure is one log line and the process goes on."""
        try:
            await self.reload()
        except ConfigError:
            pass  # logged by reload()
        except Exception as exc:
            log.error("Reload of %s failed: %s", self.path, describe_error(exc))
            log.debug("Traceback of the reload", exc_info=exc)


# Signals that arrived before trio took over signal handling (during imports and start-up).
_early_signals: list[int] = []


def _note_early_signal(signum: int, _frame: object) -> None:
    _early_signals.append(signum)


async def _serve(host: Host, config: ConfigFile) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(config.serve)
        await nursery.start(_watch_signals, host, config)
        await host.run()
        nursery.cancel_scope.cancel()


async def _watch_signals(host: Host, config: ConfigFile,
                         task_status=trio.TASK_STATUS_IGNORED) -> None:  # fmt: skip
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        task_status.started()
        async with trio.open_nursery() as reloads:
            if signal.SIGHUP in _early_signals:
                log.info("Got SIGHUP during start-up: reloading once ready")
                reloads.start_soon(config.reload_logged)
            stops = [signum for signum in _early_signals if signum != signal.SIGHUP]
            if stops:
                log.info("Got %s during start-up: shutting down", signal.Signals(stops[0]).name)
                host.quit()
            await _take_signals(host, config, signals, reloads)


async def _take_signals(host: Host, config: ConfigFile, signals, reloads: trio.Nursery) -> None:
    async for signum in signals:
        if signum == signal.SIGHUP:
            if not host.quitting:
                reloads.start_soon(config.reload_logged)
            continue
        if host.quitting:
            log.warning("Second %s: exiting at once", signal.Signals(signum).name)
            logging.shutdown()
            os._exit(128 + signum)
        log.info(
            "Got %s: shutting down (send it again to exit at once)", signal.Signals(signum).name
        )
        host.quit()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        plugins = Plugins()
    except ConfigError as exc:  # two distributions claim one name
        print(f"immp: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.plugins:
        return _list_plugins(plugins)
    if not args.config:
        _parser().print_usage(sys.stderr)
        print("immp: error: a config file is needed", file=sys.stderr)
        return EXIT_CONFIG
    file = args.config
    try:
        data = load_file(file)
        host = build_host(data, file=file, plugins=plugins, warn=_print_warning)
        for broken in plugins.broken:  # the config does not use it, or building had failed
            print(f"immp: warning: {broken}; its plugs and hooks are unavailable",
                  file=sys.stderr)  # fmt: skip
        _setup_logging(data.get("logging"), file, args.log_format)
        if args.check:
            try:
                host.store.check()
            except StoreError as exc:
                print(f"immp: error: {exc}", file=sys.stderr)
                return exc.status
            counts = ", ".join(_count(len(items), noun) for items, noun in (
                (host.plugs, "plug"), (host.channels, "channel"), (host.groups, "group"),
                (host.hooks, "hook")))  # fmt: skip
            print(f"{file}: OK ({counts})")
            return EXIT_OK
    except ConfigError as exc:
        print(f"immp: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _note_early_signal)
    config = ConfigFile(file, data, host, plugins, write=args.write, log_format=args.log_format)
    if args.write:
        for stale in remove_stale_temp_files(file):
            log.info("Removed %s, left by a write that was cut off", stale)
        host.on_config_change(config.save)
    log.info(
        "Starting IMMP %s with %s (%s, %s; %s)",
        _version(),
        file,
        _count(len(host.plugs), "plug", host.plugs),
        _count(len(host.hooks), "hook", host.hooks),
        ", ".join(_distributions_in_use(host)),
    )
    log.info("Store: %s", host.store.describe())
    status = EXIT_OK
    try:
        trio.run(_serve, host, config)
    except KeyboardInterrupt:
        pass
    except Exception as exc:
        if (store_error := StoreError.inside(exc)) is not None:  # one line, no traceback
            print(f"immp: error: {store_error}", file=sys.stderr)
            return store_error.status
        log.critical("Host failed: %s", exc, exc_info=exc)
        status = EXIT_FAILED
    if (host.store.unwritten or host.store.final_error) and status == EXIT_OK:
        status = EXIT_FAILED  # (each said as an error: when the store closed, or by the host)
    if args.write:
        config.save()
    if host.journal.enabled and not host.journal.undelivered:  # (else said as a warning)
        log.info("Journal: %s", host.journal.summary())
    log.info("Stopped")
    return status


if __name__ == "__main__":
    sys.exit(main())
