"""Registers the IRC plug with IMMP's plugin discovery."""

import immp

from .plug import IRCPlug


@immp.hookimpl
def register_plugs(register):
    register("irc", IRCPlug, aliases=["immp.plug.irc.IRCPlug"])
