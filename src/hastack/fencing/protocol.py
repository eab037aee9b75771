"""Running a fence agent by the fence-agents protocol: arguments as `key=value` lines on
stdin, the action among them; exit code 0 for success (for `status`: 0 on, 2 off)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hastack.membership.priority import LIVENESS_NICE
from hastack.processes import set_autogroup_nice

__all__ = ["AgentRun", "WarmAgents", "find_agent", "read_metadata", "run_agent"]

# Parameters hastack supplies itself for every call; an agent may mark them required.
SUPPLIED = frozenset({"action", "plug", "port", "nodename", "port_as_ip"})


@dataclass(frozen=True, slots=True)
class AgentRun:
    rc: int
    output: str
    duration: float
    timed_out: bool = False

    @property
    def reason(self) -> str:
        if self.timed_out:
            return f"timed out after {self.duration:.1f}s (killed)"
        lines = [line.strip() for line in self.output.splitlines() if line.strip()]
        return lines[-1][:300] if lines else f"exit code {self.rc}"


def find_agent(name: str, extra_dirs: Sequence[str] = ()) -> Path | None:
    for directory in extra_dirs:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    # hastack's own agents sit next to the Python that runs hastack (the virtual environment).
    here = Path(sys.executable).parent / name
    if here.is_file() and os.access(here, os.X_OK):
        return here
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin")
    return Path(found) if found else None


async def _spawn(path: Path) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        str(path),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    # On the failover path (nothing exclusive starts elsewhere before it answers): at the
    # liveness threads' CPU priority, not behind a saturated host's other work. Set within
    # microseconds of the fork, before the program has done anything — on its session too:
    # started in a session of its own, its nice value alone would count only within it
    # (kernel autogroups: hastack.processes.set_autogroup_nice).
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, proc.pid, LIVENESS_NICE)
    set_autogroup_nice(proc.pid, LIVENESS_NICE)
    return proc


def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


class WarmAgents:
    """Fence agents started ahead of need, each waiting for its arguments on stdin.

    A fence agent is a program started per call (fence_ipmilan, fence_hastack_local: a
    Python interpreter and its imports, 0.13 s on idle cores and 0.3-0.5 s on busy ones),
    and fencing is on the failover path: nothing exclusive starts elsewhere before the fence
    is confirmed. A full node (the DC, and every node that may become DC) keeps one such
    process per fence program, started but told nothing: a fencing hands it its arguments
    and it acts at once. Until then it has done nothing but start (the protocol's arguments,
    the action and the node among them, come on stdin), and if its parent dies it reads an
    empty stdin and exits without acting (no node named). One is replaced after MAX_AGE, so
    an upgraded program is picked up."""

    MAX_AGE = 300.0

    def __init__(self) -> None:
        self._ready: dict[Path, tuple[asyncio.subprocess.Process, float]] = {}
        self._starting: set[Path] = set()

    def fresh(self, path: Path) -> bool:
        """One process of `path` waits, young enough to be used."""
        entry = self._ready.get(path)
        if entry is None:
            return False
        proc, at = entry
        return proc.returncode is None and time.monotonic() - at < self.MAX_AGE

    async def warm(self, path: Path) -> None:
        """Have one process of `path` waiting (started now if none is, or it is too old)."""
        if self.fresh(path) or path in self._starting:
            return
        old = self._ready.pop(path, None)
        if old is not None:
            await self._end(old[0])
        self._starting.add(path)
        try:
            self._ready[path] = (await _spawn(path), time.monotonic())
        finally:
            self._starting.discard(path)

    def take(self, path: Path) -> asyncio.subprocess.Process | None:
        """The waiting process of `path` (no longer waiting), or None."""
        if not self.fresh(path):
            return None
        return self._ready.pop(path)[0]

    @staticmethod
    async def _end(proc: asyncio.subprocess.Process) -> None:
        _kill(proc)
        with contextlib.suppress(ProcessLookupError):
            await proc.wait()

    async def close(self) -> None:
        ready, self._ready = self._ready, {}
        for proc, _ in ready.values():
            await self._end(proc)


async def run_agent(
    path: Path, args: Mapping[str, str], timeout: float, *, warm: WarmAgents | None = None
) -> AgentRun:
    """Run the agent with `args`; a waiting process of it from `warm` when there is one.
    The duration runs from the moment the arguments were handed over."""
    stdin = "".join(f"{k}={v}\n" for k, v in args.items()).encode()
    started = time.monotonic()
    proc = warm.take(path) if warm is not None else None
    if proc is None:
        proc = await _spawn(path)
    try:
        async with asyncio.timeout(timeout):
            out, _ = await proc.communicate(stdin)
    except TimeoutError:
        _kill(proc)
        await proc.wait()
        return AgentRun(1, "", time.monotonic() - started, timed_out=True)
    except asyncio.CancelledError:
        _kill(proc)
        await proc.wait()  # reaped now, not by a transport collected after the loop closed
        raise
    rc = proc.returncode if proc.returncode is not None else 1
    return AgentRun(rc, out.decode(errors="replace"), time.monotonic() - started)


def read_metadata(path: Path, timeout: float = 10.0) -> dict[str, frozenset[str]]:
    """The parameters the agent's metadata requires, each with the names that satisfy it
    (its own and the old name it `obsoletes`); deprecated aliases are not requirements.
    Blocking: used by configuration checks."""
    import subprocess  # noqa: PLC0415 - only the configuration check needs it

    result = subprocess.run(
        [str(path), "-o", "metadata"], capture_output=True, timeout=timeout, check=False, text=True
    )
    if result.returncode != 0:
        raise ValueError(f"{path.name} -o metadata exited with {result.returncode}")
    try:
        root = ET.fromstring(result.stdout)
    except ET.ParseError as exc:
        raise ValueError(f"{path.name} metadata is not valid XML ({exc})") from None
    required: dict[str, frozenset[str]] = {}
    for p in root.iterfind("./parameters/parameter"):
        name = p.get("name")
        if not name or p.get("required") not in ("1", "true") or p.get("deprecated") == "1":
            continue
        old = p.get("obsoletes")
        required[name] = frozenset({name, old} if old else {name})
    return required
