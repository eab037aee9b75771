"""Recording exclusive resources held on this node, and keeping the watchdog informed.

Exclusive means: must never be active on two nodes at once — a primitive that is not a clone
(a VIP, a singleton service) and the promoted role of a clone with promoted-max 1 (the Galera
writer). The guard writes the exclusivity record (hastack.model.exclusivity) that the
checker reads, and arms the watchdog while anything exclusive is held.

The watchdog is armed from two threads: the agent's loop at each pass (`set_deadline`, which
also says until when the loop counts as alive) and the lease's renewal thread at each good
renewal (`renewed`), so that a loop busy for a second with a large plan does not leave the
watchdog with the deadline of the renewal before (docs/fencing.md, "Watchdog"). One lock
orders them with `acquire` and `release`: nothing is armed after the `safe` of a release.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

__all__ = ["ExclusiveGuard", "Watchdog"]


class Watchdog(Protocol):
    def arm(self, deadline: float) -> bool: ...
    def alive(self, deadline: float) -> bool: ...
    def safe(self) -> bool: ...


def measure_offset() -> tuple[float, float]:
    """wall - monotonic, and the uncertainty of that measurement (seconds)."""
    best = (0.0, float("inf"))
    for _ in range(3):
        m0 = time.monotonic()
        wall = time.time()
        m1 = time.monotonic()
        error = m1 - m0
        if error < best[1]:
            best = (wall - (m0 + m1) / 2, error)
    return best


class ExclusiveGuard:
    def __init__(
        self,
        node: str,
        log_path: Path | None,
        watchdog: Watchdog | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node = node
        self._log = log_path
        self._watchdog = watchdog
        self._clock = clock
        self.held: set[str] = set()
        self.deadline: float | None = None
        # Until when the agent's loop counts as alive (its last pass + its alive window): the
        # renewal thread arms the watchdog only until then, so a wedged loop that holds
        # something exclusive is still reset.
        self._loop_alive_until: float | None = None
        self._lock = threading.Lock()
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)

    def _record(self, resource: str, event: str) -> None:
        if self._log is None:
            return
        offset, error = measure_offset()
        mono = self._clock()
        entry = {
            "node": self.node,
            "resource": resource,
            "event": event,
            "mono": mono,
            "wall": mono + offset,
            "offset": offset,
            "offset_error": error,
        }
        with self._log.open("a") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")

    def acquire(self, resource: str) -> None:
        """Before anything that may make `resource` active here."""
        with self._lock:
            if self._watchdog is not None and self.deadline is not None:
                self._watchdog.arm(self.deadline)
            if resource not in self.held:
                self.held.add(resource)
                self._record(resource, "acquire")

    def release(self, resource: str) -> None:
        """After `resource` is certainly no longer active here."""
        with self._lock:
            if resource in self.held:
                self.held.discard(resource)
                self._record(resource, "release")
            if not self.held and self._watchdog is not None:
                self._watchdog.safe()

    def set_deadline(self, deadline: float, alive_until: float | None = None) -> None:
        """The moment by which this node must hold nothing exclusive unless renewed again;
        with nothing exclusive held, `alive_until` tells the watchdog when to give the agent
        up for wedged (docs/control-plane.md)."""
        with self._lock:
            self.deadline = deadline
            self._loop_alive_until = alive_until
            if self._watchdog is not None:
                if self.held:
                    self._watchdog.arm(deadline)
                elif alive_until is not None:
                    self._watchdog.alive(alive_until)
                else:
                    self._watchdog.safe()

    def renewed(self, deadline: float) -> None:
        """The lease was renewed (called from the renewal thread): `deadline` is the new
        lease-safe moment. Re-arm the watchdog at once while something exclusive is held and
        the loop counts as alive; otherwise the loop's next pass says what holds."""
        with self._lock:
            alive_until = self._loop_alive_until
            if not self.held or alive_until is None or self._clock() >= alive_until:
                return
            if self.deadline is not None and deadline <= self.deadline:
                return
            self.deadline = deadline
            if self._watchdog is not None:
                self._watchdog.arm(deadline)
