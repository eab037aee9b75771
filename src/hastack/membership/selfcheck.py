"""The agent's self-check: an agent never goes silent.

A thread of its own watches that the agent's cycle keeps running. If the event loop is
blocked (a deadlock, a call that never returns, a loop starved for good) the cycle stops
ticking; past `limit` seconds the thread logs where the event loop's thread is stuck, records
it, and ends the process so that its supervisor (systemd's `Restart=`, the lab's supervisor)
starts a fresh agent — which rejoins, adopts what runs and carries on. A process that merely
exists while its node looks dead to everyone is the one outcome not allowed
(docs/control-plane.md).

A loop that is merely **starved** — runnable, waiting for a CPU on a saturated machine — is
not stuck: a new process would be starved the same, and its start (a CPU-second) and the
election a DC's restart causes add to the load that starved it. The time the loop's thread
spent waiting in the kernel's run queue (`/proc/self/task/<tid>/schedstat`, its second
field) is therefore not held against it, up to STARVED_AT_MOST × limit in all: a loop
starved for good is still ended.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable

__all__ = [
    "EXIT_STALLED",
    "STARVED_AT_MOST",
    "SelfCheck",
    "is_stalled",
    "run_queue_wait",
    "thread_stacks",
]

log = logging.getLogger("hastack.selfcheck")


def thread_stacks(only: int | None = None) -> str:
    """Every thread's stack, each headed by its name; with `only`, that thread's stack alone."""
    names = {t.ident: t.name for t in threading.enumerate()}
    frames = sys._current_frames()
    if only is not None:
        frame = frames.get(only)
        return "".join(traceback.format_stack(frame)) if frame is not None else ""
    out = []
    for ident, frame in frames.items():
        out.append(f"thread {names.get(ident, ident)}:")
        out.append("".join(traceback.format_stack(frame)).rstrip())
    return "\n".join(out)


# The exit code of an agent that ended itself because it stopped making progress
# (EX_SOFTWARE in sysexits.h: "an internal software error").
EXIT_STALLED = 70

# A stall of up to this many limits is forgiven while the loop's thread was waiting for a CPU.
STARVED_AT_MOST = 3.0


def run_queue_wait(native_id: int | None) -> float | None:
    """Seconds the thread has spent runnable but waiting for a CPU (None: unknown)."""
    if native_id is None:
        return None
    try:
        with open(f"/proc/self/task/{native_id}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def is_stalled(stalled: float, waited: float, limit: float) -> bool:
    """Has a loop that made no progress for `stalled` seconds, `waited` of them in the run
    queue, stopped for good? Past `limit` of its own time, or past STARVED_AT_MOST limits."""
    return stalled - max(0.0, waited) > limit or stalled > STARVED_AT_MOST * limit


class SelfCheck:
    def __init__(
        self,
        limit: float,
        *,
        on_stall: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        exit_process: Callable[[int], None] = os._exit,
        waited: Callable[[int | None], float | None] = run_queue_wait,
    ) -> None:
        self.limit = limit
        self.on_stall = on_stall  # records the stall (the agent's event log)
        self._clock = clock
        self._exit = exit_process
        self._waited = waited
        self._last = clock()
        self._what = "starting"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watched = threading.main_thread().ident
        self._native: int | None = threading.main_thread().native_id
        # The loop thread's run-queue wait as the check saw it at the loop's last progress.
        self._ticked = True
        self._wait_base: float | None = None

    def tick(self, what: str = "cycle") -> None:
        """The agent made progress (called from its event loop)."""
        self._last = self._clock()
        self._what = what
        self._watched = threading.get_ident()
        self._native = threading.get_native_id()
        self._ticked = True

    def stalled_for(self) -> float:
        return self._clock() - self._last

    def start(self) -> None:
        self._last = self._clock()
        self._thread = threading.Thread(target=self._run, name="self-check", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def check(self) -> bool:
        """One check; True if the agent is making progress. On a stall: report, then exit."""
        stalled = self.stalled_for()
        wait = self._waited(self._native)
        if self._ticked or self._wait_base is None:
            # Progress since the last check: the run-queue wait counts from about now (the
            # checks are a tenth of the limit apart, so little is lost either way).
            self._ticked, self._wait_base = False, wait
        waited = wait - self._wait_base if wait is not None and self._wait_base is not None else 0.0
        if not is_stalled(stalled, waited, self.limit):
            return True
        where = thread_stacks(only=self._watched or 0) or "(unknown)\n"
        starved = f"; {waited:.1f}s of it waiting for a CPU" if waited >= 0.05 else ""
        reason = (
            f"the agent's event loop made no progress for {stalled:.1f}s "
            f"(limit {self.limit:g}s{starved}; last: {self._what})"
        )
        log.critical("%s; exiting so that the supervisor restarts it. Stuck at:\n%s", reason, where)
        if self.on_stall is not None:
            try:
                self.on_stall(reason)
            except Exception:  # the exit below must happen whatever the report does
                log.exception("self-check: recording the stall failed")
        for handler in logging.getLogger().handlers:
            handler.flush()
        self._exit(EXIT_STALLED)
        return False

    def _run(self) -> None:
        period = max(0.1, self.limit / 10)
        while not self._stop.wait(period):
            if not self.check():
                return
