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

__all__ = [
    "CPU_CGROUP_ROOT",
    "ProcessRecord",
    "in_cpu_group",
    "is_alive",
    "make_cpu_group",
    "pids_by_netns",
    "remove_cpu_group",
    "send",
    "set_autogroup_nice",
    "spawn",
    "start_ticks",
    "stop",
    "wait_exit",
    "wait_gone",
]


@dataclass(frozen=True, slots=True)
class ProcessRecord:
    pid: int
    start_ticks: int  # field 22 of /proc/PID/stat: identifies this process, not just the PID

    def to_json(self) -> dict[str, int]:
        return {"pid": self.pid, "start_ticks": self.start_ticks}

    @staticmethod
    def from_json(data: Mapping[str, int]) -> ProcessRecord:
        return ProcessRecord(int(data["pid"]), int(data["start_ticks"]))


def start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat, or None if the process is gone (or a zombie)."""
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
    return start_ticks(record.pid) == record.start_ticks


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
    ticks = start_ticks(proc.pid)
    if ticks is None:
        proc.wait()
        raise RuntimeError(f"{argv[0]} exited at once (code {proc.returncode}); see {log_path}")
    return ProcessRecord(proc.pid, ticks), proc


def send(record: ProcessRecord, sig: signal.Signals, *, group: bool = False) -> bool:
    """Signal the process (or its group) if it is still the one we started; False if gone."""
    if not is_alive(record):
        return False
    try:
        if group:
            os.killpg(record.pid, sig)
        else:
            os.kill(record.pid, sig)
    except ProcessLookupError:
        return False
    return True


def _reap(pid: int) -> None:
    # Our own children must be waited for, or they linger as zombies.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop(record: ProcessRecord, *, grace: float = 5.0, group: bool = False) -> None:
    """SIGTERM (and SIGCONT, in case it is paused), then SIGKILL after `grace` seconds.
    With `group`, the signals go to the process group it leads (a service and its children)."""
    if not send(record, signal.SIGTERM, group=group):
        return
    send(record, signal.SIGCONT, group=group)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(record.pid)
        if not is_alive(record):
            return
        time.sleep(0.05)
    send(record, signal.SIGKILL, group=group)
    wait_gone(record)


def state(pid: int) -> str | None:
    """The process's state letter (R, S, T, Z...) from /proc/PID/stat, None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()[0]


def wait_stopped(pids: list[int], timeout: float = 2.0) -> list[int]:
    """Wait until every process is stopped by a signal (SIGSTOP is delivered asynchronously);
    returns those that are not, after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        running = [p for p in pids if state(p) not in (None, "T", "t", "Z")]
        if not running or time.monotonic() >= deadline:
            return running
        time.sleep(0.01)


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


async def wait_exit(record: ProcessRecord, timeout: float) -> bool:
    """Wait (without polling) until the process exits; True if it did within `timeout`.

    Works for any process, not only our children, through a pidfd.
    """
    # Imported here: the process watchdog, one per node, uses this module and no event loop.
    import asyncio  # noqa: PLC0415

    try:
        fd = os.pidfd_open(record.pid)
    except ProcessLookupError:
        return True
    try:
        if not is_alive(record):  # checked after opening: the pidfd is for this very process
            return True
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not exited.done():
                exited.set_result(None)

        loop.add_reader(fd, readable)
        try:
            await asyncio.wait_for(exited, timeout)
        except TimeoutError:
            return False
        finally:
            loop.remove_reader(fd)
        return True
    finally:
        os.close(fd)


def set_autogroup_nice(pid: int, nice: int) -> bool:
    """Give the session (autogroup) of `pid` the priority `nice`; False where the kernel has
    no autogroups or refuses. Where autogroups are on (`kernel.sched_autogroup_enabled`,
    as on this machine), the scheduler first shares the CPU equally between sessions and
    applies a thread's nice value only within its own session: every lab process is started
    in a session of its own, so etcd's nice -10 counted for nothing against a hundred agents'
    and thousands of probes' sessions, and its leader, starved, stopped answering renewals
    (docs/control-plane.md, "Where a hundred computes' cost goes"); resource agents, each in
    a session of its own too, ran beside the agent as its equals whatever `nice` said."""
    try:
        with open(f"/proc/{pid}/autogroup", "w") as f:
            f.write(str(nice))
    except OSError:
        return False
    return True


def pids_by_netns(namespaces: list[str]) -> dict[str, list[ProcessRecord]]:
    """The processes of each of `namespaces` (those that exist), in one pass over /proc."""
    by_id: dict[tuple[int, int], str] = {}
    for namespace in namespaces:
        try:
            st = os.stat(f"/run/netns/{namespace}")
        except FileNotFoundError:
            continue
        by_id[(st.st_ino, st.st_dev)] = namespace
    found: dict[str, list[ProcessRecord]] = {}
    if not by_id:
        return found
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            st = os.stat(f"/proc/{pid}/ns/net")
        except OSError:
            continue
        namespace_of = by_id.get((st.st_ino, st.st_dev))
        if namespace_of is not None:
            ticks = start_ticks(pid)
            if ticks is not None:
                found.setdefault(namespace_of, []).append(ProcessRecord(pid, ticks))
    return found


# The cgroup (v1) hierarchy of the CPU controller, where the machine mounts one.
CPU_CGROUP_ROOT = Path("/sys/fs/cgroup/cpu")


def make_cpu_group(name: str, shares: int, root: Path = CPU_CGROUP_ROOT) -> Path | None:
    """A CPU cgroup of our own under `root` with `shares` (1024 weighs as much as one
    nice-0 session beside it); None where there is no such hierarchy or we may not write it.

    Autogroups apply only to processes in the root cgroup: inside a group of its own, a
    whole set of processes (a hundred lab computes, each in sessions of its own) weighs
    `shares` against each session outside it, and their nice values count against each
    other again. Refuses a name that exists (another run's)."""
    if not (root / "cpu.shares").exists():
        return None
    path = root / name
    try:
        path.mkdir()  # FileExistsError: another's, never to be touched
    except FileExistsError:
        raise
    except OSError:
        return None
    try:
        (path / "cpu.shares").write_text(str(shares))
    except OSError:
        path.rmdir()
        return None
    return path


def in_cpu_group(group: Path, argv: Sequence[str]) -> list[str]:
    """`argv` started inside `group`: the shell joins it, then execs (same pid), so nothing
    the command starts runs outside it even for a moment."""
    return ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(group), *argv]


def remove_cpu_group(group: Path, wait: float = 5.0) -> bool:
    """Remove a CPU cgroup once its processes are gone (they were killed before); False if
    it was not there. A group still holding exiting processes refuses for a moment."""
    deadline = time.monotonic() + wait
    while True:
        try:
            group.rmdir()
            return True
        except FileNotFoundError:
            return False
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)
