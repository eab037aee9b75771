"""Waiting for child processes without a thread each, on Python 3.11.

An agent runs every resource-agent action as a child process. Python 3.11's asyncio waits
for each child in a thread of its own (`ThreadedChildWatcher`): a thread started, and a
blocking `waitpid` in it, per action. At an apply of 150 primitives each node starts 150
probes at once; measured in one process (300 `/bin/true` children, 4 at a time), the thread
per child costs 0.52-0.82 ms of the parent's CPU per child, a process descriptor watched by
the event loop (`pidfd_open`, Linux 5.3+) 0.32-0.49 ms (docs/control-plane.md, "What a node
spends taking a configuration on"). Python 3.12 waits this way by itself; on 3.11 its own
`PidfdChildWatcher` serves one loop only, and an agent runs loops in other threads too (the
API, namespaces), so this one registers each child on the loop that started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any, TypeVarTuple

__all__ = ["install"]

log = logging.getLogger(__name__)

_Ts = TypeVarTuple("_Ts")


class PidfdWatcher(asyncio.AbstractChildWatcher):
    """Each child's pidfd read by the loop that started the child; its exit reaped there."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # pid -> (loop, pidfd)
        self._children: dict[int, tuple[asyncio.AbstractEventLoop, int]] = {}

    def add_child_handler(
        self, pid: int, callback: Callable[[int, int, *_Ts], object], *args: *_Ts
    ) -> None:
        loop = asyncio.get_running_loop()
        pidfd = os.pidfd_open(pid)
        with self._lock:
            self._children[pid] = (loop, pidfd)
        loop.add_reader(pidfd, self._reap, pid, callback, args)

    def _reap(self, pid: int, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        with self._lock:
            loop, pidfd = self._children.pop(pid)
        loop.remove_reader(pidfd)
        os.close(pidfd)
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            log.warning("child process %d was reaped elsewhere: its exit status is lost", pid)
            returncode = 255
        else:
            returncode = os.waitstatus_to_exitcode(status)
        callback(pid, returncode, *args)

    def remove_child_handler(self, pid: int) -> bool:
        with self._lock:
            found = self._children.pop(pid, None)
        if found is None:
            return False
        loop, pidfd = found
        with contextlib.suppress(RuntimeError):  # its loop already closed
            loop.remove_reader(pidfd)
        os.close(pidfd)
        return True

    def attach_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Nothing to attach: each child is watched by the loop that started it."""

    def close(self) -> None:
        with self._lock:
            pids = list(self._children)
        for pid in pids:
            self.remove_child_handler(pid)

    def is_active(self) -> bool:
        return True

    def __enter__(self) -> PidfdWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def install() -> bool:
    """Wait for this process's children through pidfds, where that is both needed (Python
    before 3.12) and possible (the kernel has `pidfd_open`). True if installed."""
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.set_child_watcher(PidfdWatcher())
    return True
