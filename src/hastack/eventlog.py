"""An agent's own record of what happened to it, as JSON lines with both clocks.

Tests and benchmarks read it to learn *when* an agent decided something (membership lost,
became DC) by its own monotonic clock, mapped to wall time.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from hastack.model.jsontext import json_lines

__all__ = ["EventLog", "read_events"]


class EventLog:
    def __init__(self, path: Path | None, node: str) -> None:
        self._path = path
        self._node = node
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def record(self, event: str, **fields: Any) -> None:
        """One line; `t`, `mono`, `node` (the writer) and `event` are never a field's: an event
        about another node names it `peer`."""
        if self._path is None:
            return
        reserved = {"t": time.time(), "mono": time.monotonic(), "node": self._node, "event": event}
        entry = {**fields, **reserved}
        line = json.dumps(entry, sort_keys=True) + "\n"
        # One write per line with O_APPEND: lines from a crash are whole or absent.
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


def read_events(path: Path) -> list[dict[str, Any]]:
    """Every whole line of an event log; a torn last line is skipped."""
    if not path.exists():
        return []
    return list(json_lines(path.read_text().splitlines()))
