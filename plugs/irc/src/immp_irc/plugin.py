"""Registers the IRC plug with IMMP's plugin discovery (by path: imported when a config uses it)."""

import immp


@immp.hookimpl
def register_plugs(register):
    register("irc", "immp_irc.plug.IRCPlug", aliases=["immp.plug.irc.IRCPlug"])
