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

__all__ = ["AgentRun", "find_agent", "read_metadata", "run_agent"]

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


async def run_agent(path: Path, args: Mapping[str, str], timeout: float) -> AgentRun:
    stdin = "".join(f"{k}={v}\n" for k, v in args.items()).encode()
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        str(path),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        async with asyncio.timeout(timeout):
            out, _ = await proc.communicate(stdin)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        return AgentRun(1, "", time.monotonic() - started, timed_out=True)
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
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
