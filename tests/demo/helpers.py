"""A recording hook and a host of demo plugs, for the demo plug tests."""

from __future__ import annotations

import immp
from immp.testing import Recorder
from immp_demo import DemoPlug


def demo_host(**config) -> tuple[immp.Host, DemoPlug, Recorder]:
    """A host with one demo plug ``demo`` (timer off unless ``interval`` given) and a recorder."""
    host = immp.Host()
    plug = host.add_plug(DemoPlug("demo", {"interval": None, **config}, host))
    recorder = host.add_hook(Recorder(host=host))
    return host, plug, recorder
