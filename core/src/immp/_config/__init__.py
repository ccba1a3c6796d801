"""
Config files: load them (YAML, JSON or TOML by extension), validate every key before anything
connects, build a :class:`~immp.Host`, and write the live config back (``immp -w``).

One module per step: :mod:`.load` reads a file into a mapping, :mod:`.sections` is the schema
of the top-level sections, :mod:`.build` validates a mapping and makes the host, :mod:`.dump`
turns a live host back into a mapping and text, :mod:`.write` puts text on disk atomically,
and :mod:`.docs` renders a schema as the Markdown table of the READMEs.
"""

from .build import build_host
from .dump import dump_config, serialise
from .load import FORMATS, load_file
from .sections import KNOWN_SECTIONS, TOP_SCHEMA
from .write import remove_stale_temp_files, write_config

__all__ = [
    "FORMATS",
    "KNOWN_SECTIONS",
    "TOP_SCHEMA",
    "build_host",
    "dump_config",
    "load_file",
    "remove_stale_temp_files",
    "serialise",
    "write_config",
]
