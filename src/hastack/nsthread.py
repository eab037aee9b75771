"""Running a piece of blocking code inside a network namespace, without touching the rest.

(Kept free of heavy imports: the fence agent and the watchdog use it and must start fast.)

Entering a network namespace (setns with CLONE_NEWNET) changes only the calling thread, so the
code runs on a fresh thread that enters the namespace, does its work and ends; the agent's
own threads never change namespace.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["call_in_netns", "in_netns"]

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def call_in_netns(netns: str, fn: Callable[[], T]) -> T:
    """Run blocking `fn` on a fresh thread inside `netns`; its result or its exception."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns into {netns}: {os.strerror(err)}")
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread below
            box["error"] = exc

    thread = threading.Thread(target=run, name=f"netns-{netns}", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


async def in_netns(netns: str | None, fn: Callable[[], T]) -> T:
    """Run blocking `fn` in a thread, inside `netns` if given."""
    if netns is None:
        return await asyncio.to_thread(fn)
    return await asyncio.to_thread(call_in_netns, netns, fn)
