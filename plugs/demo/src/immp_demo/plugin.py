"""Registers the demo plug with IMMP's plugin discovery."""

import immp

from .plug import DemoPlug


@immp.hookimpl
def register_plugs(register):
    register("demo", DemoPlug, aliases=["immp.plug.dummy.DummyPlug", "demo.DemoPlug"])
