"""Registers the commands hook with IMMP's plugin discovery."""

import immp

from .hook import CommandHook


@immp.hookimpl
def register_hooks(register):
    register("commands", CommandHook, aliases=["immp.hook.command.CommandHook"])
