"""
Any value at any key of a config, or a stray key anywhere, gives a host or a one-line
ConfigError, never another exception (which the runner would show as a traceback).
"""

from __future__ import annotations

import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import immp
from immp.plugins import Plugins

BASE = {
    "plugs": {
        "a": {"path": "demo", "config": {"interval": None}},
        "i": {"path": "irc", "enabled": False,
              "config": {"server": {"host": "h", "port": 6667}, "user": {"nick": "n"},
                         "sasl": {"username": "u", "password": "p"}}},
    },
    "channels": {"x": {"plug": "a", "source": "x"}, "y": {"plug": "i", "source": "#y"}},
    "groups": {"g": {"channels": ["x"], "exclude": {"private": ["a"]}}},
    "hooks": {
        "s": {"path": "sync", "priority": 1,
              "config": {"channels": {"m": ["x", "y"]}, "plugs": {"a": {"joins": False}}}},
        "c": {"path": "commands", "timeout": 10,
              "config": {"prefix": ["!"], "mapping": {"l": {"groups": ["g"], "hooks": ["s"]}},
                         "admins": {"a": ["u"]}, "sets": {"t": {"s": ["sync-list"]}}}},
    },
    "host": {"open-timeout": 5},
}  # fmt: skip


def _paths(value, path=()):
    yield path
    if isinstance(value, (dict, list)):
        for key, inner in value.items() if isinstance(value, dict) else enumerate(value):
            yield from _paths(inner, (*path, key))


PATHS = [p for p in _paths(BASE) if p]
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=5,
)  # fmt: skip
PLUGINS = Plugins()


def _quiet(_warning):
    pass


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(PATHS), value=VALUES, stray=st.booleans())
def test_any_value_anywhere_is_a_host_or_a_config_error(path, value, stray):
    data = copy.deepcopy(BASE)
    target = data
    for key in path[:-1]:
        target = target[key]
    if stray and isinstance(target, dict):
        target["confg"] = value
    else:
        target[path[-1]] = value
    try:
        host = immp.build_host(data, plugins=PLUGINS, warn=_quiet)
    except immp.ConfigError as exc:
        assert "\n" not in str(exc)
        return
    immp.dump_config(host, PLUGINS)
