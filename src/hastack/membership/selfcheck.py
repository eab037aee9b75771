"""The agent's self-check: an agent never goes silent.

A thread of its own watches that the agent's cycle keeps running. If the event loop is
blocked (a deadlock, a call that never returns, a loop starved for good) the cycle stops
ticking; past `limit` seconds the thread logs where the event loop's thread is stuck, records
it, and ends the process so that its supervisor (systemd's `Restart=`, the lab's supervisor)
starts a fresh agent — which rejoins, adopts what runs and carries on. A process that merely
exists while its node looks dead to everyone is the one outcome not allowed
(docs/control-plane.md).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable

__all__ = ["EXIT_STALLED", "SelfCheck", "thread_stacks"]

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


class SelfCheck:
    def __init__(
        self,
        limit: float,
        *,
        on_stall: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        exit_process: Callable[[int], None] = os._exit,
    ) -> None:
        self.limit = limit
        self.on_stall = on_stall  # records the stall (the agent's event log)
        self._clock = clock
        self._exit = exit_process
        self._last = clock()
        self._what = "starting"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watched = threading.main_thread().ident

    def tick(self, what: str = "cycle") -> None:
        """The agent made progress (called from its event loop)."""
        self._last = self._clock()
        self._what = what
        self._watched = threading.get_ident()

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
        if stalled <= self.limit:
            return True
        where = thread_stacks(only=self._watched or 0) or "(unknown)\n"
        reason = (
            f"the agent's event loop made no progress for {stalled:.1f}s "
            f"(limit {self.limit:g}s; last: {self._what})"
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
