"""Putting a config file on disk atomically, so that a crash never leaves half a file."""

from __future__ import annotations

import glob
import os
import tempfile
from pathlib import Path
from typing import Any

from .dump import serialise
from .load import FORMATS


def write_config(path: str | os.PathLike, data: dict[str, Any]) -> None:
    """
    Write ``data`` to ``path`` atomically: a temporary file in the same folder, flushed to disk,
    then renamed over the old one, with the old file's permission bits. A crash at any moment
    leaves either the old or the new content, never a mix.
    """
    path = Path(path)
    text = serialise(data, FORMATS[path.suffix.lower()])
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o600
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def remove_stale_temp_files(path: str | os.PathLike) -> list[Path]:
    """
    Delete temporary files that :func:`write_config` left next to ``path`` when the process
    was killed mid-write (the config file itself is never damaged by that). Returns them.
    """
    path = Path(path)
    stale = list(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))
    for item in stale:
        item.unlink(missing_ok=True)
    return stale
