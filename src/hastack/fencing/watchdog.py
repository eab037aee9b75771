"""The watchdog: if the agent cannot make its node safe in time, the node is reset.

An agent that loses its membership must stop its exclusive resources before its lease can
expire on the server, because from then on the DC may start them elsewhere. If the agent is
hung (frozen, deadlocked, stuck in a stop that never returns) it cannot; a watchdog must.

Two kinds:

* **process**: a small process of its own (`python -m hastack.fencing.watchdog`), told over a
  Unix datagram socket `arm <deadline>` (monotonic seconds; the agent's lease-safe deadline,
  refreshed at every renewal while it holds exclusive resources) and `safe` (nothing
  exclusive runs here). It learns which process armed it from the kernel (SCM_CREDENTIALS).
  Past an armed deadline it runs the node's *reset* and exits:

  - the command the agent configuration names (`watchdog: {kind: process, reset: [argv...]}`),
    run with the node's name appended — e.g. one that powers the host off. Local clusters and
    the lab name their power switch here. If the command cannot run, fails, or outlasts
    `RESET_TIMEOUT`, the default reset follows;
  - by default: SIGKILL to the process group of the process that armed it (the agent) and to
    the process groups of the `hastack:service` resources it started (their pidfiles under
    the state directory), then a `dead` line in the node's exclusivity record. It cannot take
    back what outlives a process, such as an address a VIP added: where that matters, name a
    reset that can (a power switch), or use a device.

* **device** (`/dev/watchdog`, e.g. softdog): the kernel resets the whole machine unless the
  agent writes to the device within its timeout; `safe` disarms it with the magic close. This
  is the production choice; it cannot be exercised by the tests here, since firing it would
  reset the shared test machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from hastack.eventlog import EventLog
from hastack.membership.priority import LIVENESS_NICE, favour_this_thread
from hastack.processes import ProcessRecord, is_alive, set_autogroup_nice, spawn, start_ticks
from hastack.unixsock import socket_path_for

__all__ = [
    "RESET_TIMEOUT",
    "DeviceWatchdog",
    "ProcessWatchdogClient",
    "default_reset",
    "ensure_process_watchdog",
    "run_process_watchdog",
]

log = logging.getLogger("hastack.watchdog")

WDIOC_SETTIMEOUT = 0xC0045706  # _IOWR('W', 6, int)
WDIOC_KEEPALIVE = 0x80045705  # _IOR('W', 5, int)

# A reset command that has not finished by then is killed and the default reset runs. The
# reset should be over within the self-fence margin; this bound only keeps a hung command
# from hiding that the node was never made safe.
RESET_TIMEOUT = 10.0

_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid

# A watchdog that wakes this much later than it meant to was frozen (its node paused) or
# starved; an unarmed one then gives its agent this long to speak before killing it. An
# armed one never waits: past the lease-safe deadline the node must be reset, whatever froze.
_FROZEN = 1.0
_ALIVE_GRACE = 5.0


class ProcessWatchdogClient:
    """The agent's side of the process watchdog: fire-and-forget datagrams.

    A message that cannot be delivered (the watchdog paused with its node, its queue full) is
    counted; the first failure of a run of them is logged, and the recovery — never one line
    per message."""

    def __init__(self, socket_path: Path) -> None:
        self.path = socket_path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self.undelivered = 0  # messages lost in the current run of failures

    def _send(self, message: str) -> bool:
        try:
            self._sock.sendto(message.encode(), str(self.path))
        except OSError as exc:
            if self.undelivered == 0:
                log.warning(
                    "watchdog at %s unreachable (%s); keep-alives are being lost", self.path, exc
                )
            self.undelivered += 1
            return False
        if self.undelivered:
            log.warning("watchdog at %s reachable again (%d message(s) lost)", self.path,
                        self.undelivered)  # fmt: skip
            self.undelivered = 0
        return True

    def arm(self, deadline: float) -> bool:
        return self._send(f"arm {deadline:.6f}")

    def alive(self, deadline: float) -> bool:
        """Nothing exclusive is held, and the agent is alive: if no word comes again before
        `deadline`, the watchdog kills the agent so that its supervisor starts it again."""
        return self._send(f"alive {deadline:.6f}")

    def safe(self) -> bool:
        return self._send("safe")

    def exit(self) -> bool:
        return self._send("exit")

    def close(self) -> None:
        self._sock.close()


class DeviceWatchdog:
    """A kernel watchdog device: reset unless kept alive within `timeout` seconds."""

    def __init__(self, device: str, timeout: int) -> None:
        self.device = device
        self.timeout = timeout
        self._fd: int | None = None

    def arm(self, deadline: float) -> bool:
        _ = deadline  # a device counts its own timeout from the last keep-alive
        try:
            if self._fd is None:
                self._fd = os.open(self.device, os.O_WRONLY)
                fcntl.ioctl(self._fd, WDIOC_SETTIMEOUT, struct.pack("i", self.timeout))
            fcntl.ioctl(self._fd, WDIOC_KEEPALIVE, struct.pack("i", 0))
        except OSError as exc:
            log.error("watchdog device %s: %s", self.device, exc)
            return False
        return True

    def alive(self, deadline: float) -> bool:
        """A device watchdog keeps its meaning: armed only while something exclusive is
        held. A wedged agent without exclusive resources is left to its self-check."""
        _ = deadline
        return self.safe()

    def safe(self) -> bool:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.write(self._fd, b"V")  # magic close: disarm on close
                os.close(self._fd)
            self._fd = None
        return True

    def exit(self) -> bool:
        return self.safe()

    def close(self) -> None:
        self.safe()


# ---- the reset ------------------------------------------------------------------------------


def _kill_group(record: ProcessRecord) -> bool:
    """SIGKILL the process group of a process that is still the one recorded; True if it was
    alive. Never our own group."""
    if not is_alive(record):
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        group = os.getpgid(record.pid)
        if group != os.getpgid(0):
            os.killpg(group, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(record.pid, signal.SIGKILL)
    return True


def _service_records(state_dir: Path) -> list[ProcessRecord]:
    out = []
    for pidfile in sorted((state_dir / "services").glob("*/pid")):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            out.append(ProcessRecord.from_json(json.loads(pidfile.read_text())))
    return out


def default_reset(node: str, state_dir: Path, agent: ProcessRecord | None) -> None:
    """Kill the agent's process group and those of the services it started, then record the
    node's death for the exclusivity checker."""
    for round_ in range(5):
        targets = ([agent] if agent is not None else []) + _service_records(state_dir)
        if not [r for r in targets if _kill_group(r)]:
            break
        time.sleep(0.01 * (round_ + 1))  # a group forked meanwhile dies in the next round
    entry = {"node": node, "event": "dead", "wall": time.time(), "by": "watchdog"}
    with contextlib.suppress(OSError), (state_dir / "exclusive.jsonl").open("a") as f:
        f.write(json.dumps(entry) + "\n")


def _run_reset_command(command: Sequence[str], node: str) -> bool:
    argv = [*command, node]
    try:
        # Its own session: a reset that kills this watchdog's group does not kill itself.
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:
        log.error("reset command %s cannot run: %s", argv, exc)
        return False
    set_autogroup_nice(proc.pid, LIVENESS_NICE)  # its session too (`favour_the_reset`)
    try:
        code = proc.wait(RESET_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        log.error("reset command %s did not finish within %gs", argv, RESET_TIMEOUT)
        return False
    if code != 0:
        log.error("reset command %s failed (exit code %d)", argv, code)
        return False
    return True


def favour_the_reset() -> None:
    """Run this watchdog, and the reset it starts, ahead of the node's other work where the
    kernel allows it (root): the reset has the watchdog's lead and the DC's self-fence margin
    (0.8 s) to finish before the node's exclusive resources may start elsewhere, and a
    fresh process at the default priority took 1.4 s at a load of 26 and 4.9 s at 100
    (docs/fencing.md, "Watchdog"). The liveness threads' priority; this process has one."""
    favour_this_thread(LIVENESS_NICE)
    set_autogroup_nice(os.getpid(), LIVENESS_NICE)


def reset_node(
    node: str, state_dir: Path, command: Sequence[str], agent: ProcessRecord | None
) -> None:
    started = time.monotonic()
    if command and _run_reset_command(command, node):
        log.info("reset by %s done in %.3fs", command[0], time.monotonic() - started)
        return
    if command:
        log.error("falling back to the default reset")
    default_reset(node, state_dir, agent)
    log.info("default reset done in %.3fs", time.monotonic() - started)


# ---- the watchdog process -------------------------------------------------------------------


def _record(state_dir: Path, node: str, event: str, **fields: float) -> None:
    """What the watchdog did, in the node's own event log (the agent's events.jsonl in the
    same state directory), where an operator and the benchmarks see it: a reset leaves no
    `membership-lost` behind when the agent dies before it can write one. One append; a
    failure to write never holds the reset back."""
    with contextlib.suppress(OSError):
        EventLog(state_dir / "events.jsonl", node).record(event, **fields)


def _sender(ancdata: list[tuple[int, int, bytes]]) -> ProcessRecord | None:
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = _CREDENTIALS.unpack(payload[: _CREDENTIALS.size])[0]
            ticks = start_ticks(pid) if pid > 0 and pid != os.getpid() else None
            return ProcessRecord(pid, ticks) if ticks is not None else None
    return None


def run_process_watchdog(
    socket_path: Path, node: str, state_dir: Path, reset: Sequence[str] = ()
) -> int:
    """The watchdog process's main loop."""
    favour_the_reset()
    with contextlib.suppress(FileNotFoundError):
        socket_path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.bind(str(socket_path))
    deadline: float | None = None  # armed: reset the node past it
    armed_by: ProcessRecord | None = None
    alive_until: float | None = None  # not armed: kill the agent past it
    alive_by: ProcessRecord | None = None
    woke_late = time.monotonic()  # when the watchdog last meant to be awake
    log.info(
        "watchdog for %s listening on %s; reset: %s",
        node, socket_path, " ".join(reset) + " NODE" if reset else "default",
    )  # fmt: skip
    try:
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                log.error(
                    "watchdog for %s: deadline passed with exclusive resources held; resetting",
                    node,
                )
                _record(state_dir, node, "watchdog-reset", late=round(now - deadline, 4))
                reset_node(node, state_dir, reset, armed_by)
                return 1
            if deadline is None and alive_until is not None and now - woke_late > _FROZEN:
                # The watchdog itself was frozen with its node (or starved): the agent
                # froze with it and deserves the same chance to speak as after its start.
                alive_until = max(alive_until, now + _ALIVE_GRACE)
            if deadline is None and alive_until is not None and now >= alive_until:
                log.error(
                    "watchdog for %s: no word from the agent (pid %s) since its deadline; "
                    "killing it so that its supervisor starts it again",
                    node, alive_by.pid if alive_by else "?",
                )  # fmt: skip
                _record(state_dir, node, "watchdog-killed-agent", late=round(now - alive_until, 4))
                if alive_by is not None and is_alive(alive_by):
                    with contextlib.suppress(OSError):
                        os.kill(alive_by.pid, signal.SIGKILL)
                alive_until = None
                continue
            wake = deadline if deadline is not None else alive_until
            sock.settimeout(None if wake is None else max(0.001, wake - now))
            try:
                raw, ancdata, _flags, _address = sock.recvmsg(256, socket.CMSG_SPACE(12))
            except TimeoutError:
                woke_late = wake if wake is not None else time.monotonic()
                continue
            woke_late = time.monotonic()
            data = raw.decode(errors="replace").split()
            if not data:
                continue
            if data[0] == "arm" and len(data) == 2:
                with contextlib.suppress(ValueError):
                    deadline = float(data[1])
                    armed_by = _sender(ancdata) or armed_by
            elif data[0] == "alive" and len(data) == 2:
                with contextlib.suppress(ValueError):
                    alive_until = float(data[1])
                    alive_by = _sender(ancdata) or alive_by
                    deadline = None
            elif data[0] == "safe":
                deadline = None
                alive_until = None
            elif data[0] == "exit" and deadline is None:
                return 0
    finally:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()


USAGE = "usage: python -m hastack.fencing.watchdog SOCKET NODE STATE_DIR [-- RESET_COMMAND...]"


def main(argv: list[str]) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s watchdog %(levelname)s: %(message)s"
    )
    if len(argv) < 3 or (len(argv) > 3 and (argv[3] != "--" or len(argv) == 4)):
        print(USAGE, file=sys.stderr)
        return 2
    return run_process_watchdog(Path(argv[0]), argv[1], Path(argv[2]), argv[4:])


def ensure_process_watchdog(
    state_dir: Path, node: str, reset: Sequence[str] = ()
) -> ProcessWatchdogClient:
    """Start this node's watchdog process unless one already runs (it outlives agent
    restarts, like the services it protects); return a client for it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    socket_path = socket_path_for(state_dir, "watchdog")
    pidfile = state_dir / "watchdog.pid"
    running = False
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        running = is_alive(ProcessRecord.from_json(json.loads(pidfile.read_text())))
    if not running:
        # A socket left by a watchdog that died with its node would answer nothing: the
        # wait below must see the new one appear.
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()
        argv = [sys.executable, "-m", "hastack.fencing.watchdog", str(socket_path), node]
        argv += [str(state_dir), *(["--", *reset] if reset else [])]
        record, _ = spawn(argv, log_path=state_dir / "watchdog.log")
        pidfile.write_text(json.dumps(record.to_json()))
        for _ in range(100):  # until it listens, so the first message is not lost
            if socket_path.exists():
                break
            time.sleep(0.01)
    return ProcessWatchdogClient(socket_path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
