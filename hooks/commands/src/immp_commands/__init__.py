"""
IMMP commands hook: bot commands with help, scopes and permissions, and the running host's
plugs, hooks and channels managed from chat. Config keys and commands: :mod:`immp_commands.hook`.
"""

from .hook import CommandHook

__all__ = ["CommandHook"]
