"""
Log lines for machines: :class:`JsonFormatter` writes each record as one JSON object per line,
for log shippers (journald's JSON export, Loki, Elasticsearch, Vector...). ``immp --log-format
json`` uses it; a ``logging:`` section can name it as ``"()": immp.JsonFormatter``. And for
people: :func:`counted` words a count in a log line (``1 plug``, ``2 plugs``).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime


def counted(number: int, noun: str, plural: str | None = None) -> str:
    """``1 plug``, ``2 plugs``, ``0 hooks`` (``plural`` where it is not ``noun`` + s)."""
    return f"{number} {noun}" if number == 1 else f"{number} {plural or noun + 's'}"


class Throttle:
    """
    A log line repeated for the same cause, said once per ``interval`` seconds and key with a
    count of the times it was held back: ``held = throttle.due(key, now)`` is ``None`` while the
    line is held back (counted), else how many times it was since it was last said (say it, with
    that count). :meth:`reset` forgets every key (the trouble is over).
    """

    def __init__(self, interval: float):
        self.interval = interval
        self._said: dict = {}  # key -> [when it was last said, times held back since]

    def due(self, key, now: float) -> int | None:
        known = self._said.get(key)
        if known is not None and now - known[0] < self.interval:
            known[1] += 1
            return None
        self._said[key] = [now, 0]
        return known[1] if known is not None else 0

    def reset(self) -> None:
        self._said.clear()


class JsonFormatter(logging.Formatter):
    """
    One JSON object per record, on one line: ``time`` (ISO 8601, UTC, milliseconds),
    ``level``, ``logger``, ``message``, and ``exception`` (the formatted traceback) when the
    record carries one. Newlines inside the message stay inside the JSON string, so a
    multi-line message or traceback never splits into several log lines.
    """

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)
