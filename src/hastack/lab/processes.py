"""Starting and ending the processes a local cluster or lab owns — always by PID.

A PID alone can be reused by an unrelated process after ours exits, so every record keeps the
process's start time from /proc and every signal is sent only if it still matches.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ProcessRecord", "is_alive", "send", "spawn", "stop", "wait_gone"]


@dataclass(frozen=True, slots=True)
class ProcessRecord:
    pid: int
    start_ticks: int  # field 22 of /proc/PID/stat: identifies this process, not just the PID

    def to_json(self) -> dict[str, int]:
        return {"pid": self.pid, "start_ticks": self.start_ticks}

    @staticmethod
    def from_json(data: Mapping[str, int]) -> ProcessRecord:
        return ProcessRecord(int(data["pid"]), int(data["start_ticks"]))


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None  # a zombie has exited; only its parent's wait is missing
    return int(fields[19])


def is_alive(record: ProcessRecord) -> bool:
    return _start_ticks(record.pid) == record.start_ticks


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[ProcessRecord, subprocess.Popen[bytes]]:
    """Start a process in its own session with output to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    ticks = _start_ticks(proc.pid)
    if ticks is None:
        proc.wait()
        raise RuntimeError(f"{argv[0]} exited at once (code {proc.returncode}); see {log_path}")
    return ProcessRecord(proc.pid, ticks), proc


def send(record: ProcessRecord, sig: signal.Signals) -> bool:
    """Signal the process if it is still the one we started; False if it is gone."""
    if not is_alive(record):
        return False
    try:
        os.kill(record.pid, sig)
    except ProcessLookupError:
        return False
    return True


def _reap(pid: int) -> None:
    # Our own children must be waited for, or they linger as zombies.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop(record: ProcessRecord, *, grace: float = 5.0) -> None:
    """SIGTERM (and SIGCONT, in case it is paused), then SIGKILL after `grace` seconds."""
    if not send(record, signal.SIGTERM):
        return
    send(record, signal.SIGCONT)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(record.pid)
        if not is_alive(record):
            return
        time.sleep(0.05)
    send(record, signal.SIGKILL)
    wait_gone(record)


def wait_gone(record: ProcessRecord, timeout: float = 5.0) -> bool:
    """Wait until the process has exited (reaping it if it is our child); True if it has."""
    deadline = time.monotonic() + timeout
    while True:
        _reap(record.pid)
        if not is_alive(record):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
