"""Registers the sync and forward hooks with IMMP's plugin discovery."""

import immp

from ._forward import ForwardHook
from ._sync import SyncHook


@immp.hookimpl
def register_hooks(register):
    register("sync", SyncHook, aliases=["immp.hook.sync.SyncHook"])
    register("forward", ForwardHook, aliases=["immp.hook.sync.ForwardHook"])
