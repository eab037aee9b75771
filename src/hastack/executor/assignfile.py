"""The assignment file: how an instance learns its entities, and how it says it took them.

The executor writes `<state-dir>/assign/<name>.json` atomically (temporary file, fsync,
rename) at every change of what the node is granted (docs/assign.md):

    {"assignment": "routers", "generation": 7, "active": ["r03"], "standby": ["r11"]}

An instance that confirms (`assign-ack: true` on hastack:service) writes
`<name>.applied` with the generation it has put in force, atomically too; the executor
reports a change as done (and so lets the DC grant released entities elsewhere) only then.
Python agents get both ends from `watch` (asyncio) or `follow` (a thread): they call the
agent's function with each new generation and write the applied one after it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Assigned",
    "applied_path",
    "assigned_path",
    "follow",
    "read_applied",
    "read_assigned",
    "wait_applied",
    "watch",
    "write_applied",
    "write_assigned",
]

POLL = 0.05


@dataclass(frozen=True, slots=True)
class Assigned:
    assignment: str
    generation: int
    active: tuple[str, ...] = ()
    standby: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "assignment": self.assignment,
            "generation": self.generation,
            "active": list(self.active),
            "standby": list(self.standby),
        }


def assigned_path(directory: Path, name: str) -> Path:
    return directory / f"{name}.json"


def applied_path(directory: Path, name: str) -> Path:
    return directory / f"{name}.applied"


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_assigned(directory: Path, assigned: Assigned) -> Path:
    path = assigned_path(directory, assigned.assignment)
    _write_atomically(path, json.dumps(assigned.to_json(), sort_keys=True).encode())
    return path


def read_assigned(directory: Path, name: str) -> Assigned | None:
    """The file as last written, or None (absent or unreadable: nothing was granted)."""
    try:
        data = json.loads(assigned_path(directory, name).read_bytes())
        return Assigned(
            str(data["assignment"]),
            int(data["generation"]),
            tuple(str(e) for e in data.get("active", [])),
            tuple(str(e) for e in data.get("standby", [])),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_applied(directory: Path, name: str, generation: int) -> None:
    _write_atomically(applied_path(directory, name), f"{generation}\n".encode())


def read_applied(directory: Path, name: str) -> int:
    try:
        return int(applied_path(directory, name).read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


async def wait_applied(
    directory: Path, name: str, generation: int, deadline: float, alive: Callable[[], bool]
) -> bool:
    """Until the instance has applied `generation` (True), it died, or `deadline` passed
    (monotonic)."""
    while True:
        if read_applied(directory, name) >= generation:
            return True
        if not alive() or time.monotonic() >= deadline:
            return False
        await asyncio.sleep(POLL / 2)


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


async def watch(
    directory: Path,
    name: str,
    apply: Callable[[Assigned], Awaitable[None]],
    *,
    stop: asyncio.Event | None = None,
) -> None:
    """Call `apply` with every new generation of the file (the current one first), and write
    it as applied once `apply` returned. Runs until `stop` is set (or cancelled)."""
    seen: tuple[int, int, int] | None = None
    done = -1
    while stop is None or not stop.is_set():
        now = _identity(assigned_path(directory, name))
        if now != seen:
            seen = now
            assigned = read_assigned(directory, name)
            if assigned is None:
                assigned = Assigned(name, 0)
            if assigned.generation != done:
                await apply(assigned)
                done = assigned.generation
                if assigned.generation:
                    write_applied(directory, name, assigned.generation)
        if stop is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL)
        else:
            await asyncio.sleep(POLL)


def follow(
    directory: Path,
    name: str,
    apply: Callable[[Assigned], None],
    stop: threading.Event,
) -> None:
    """`watch` for a thread of a synchronous agent: blocks until `stop` is set."""
    seen: tuple[int, int, int] | None = None
    done = -1
    while not stop.is_set():
        now = _identity(assigned_path(directory, name))
        if now != seen:
            seen = now
            assigned = read_assigned(directory, name) or Assigned(name, 0)
            if assigned.generation != done:
                apply(assigned)
                done = assigned.generation
                if assigned.generation:
                    write_applied(directory, name, assigned.generation)
        stop.wait(POLL)
