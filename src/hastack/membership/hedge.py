"""Store calls on the failover path, re-sent while unanswered.

When the host that leads etcd dies, a request sent to a surviving member before the members
have elected a new leader is forwarded to the dead one and lost: its answer never comes, and
the caller waits out a whole store timeout (1 s in the lab) before it sends it again — long
after the new leader (elected 0.5-1 s after the crash with a 500 ms election timeout) could
have answered. The calls that make a failover (deposing a silent DC, the campaign, the
fencing DC's quorum check and its record of the result) are therefore sent again every
HEDGE_EVERY while none has answered, each copy on its own, and the first answer counts.

Only for calls whose repetition is harmless: each is a transaction guarded by a compare (the
leader key's epoch, the absence of the key, the history's revision), so a copy that arrives
after another succeeded finds its compare false and changes nothing. Such a copy may answer
first, while the copy that did the work is still on its way back, so each call recognises its
own work in a refusal: `campaign` its own key, `depose` its own name in the deposition record,
`record_fencing` its record already in the history (not appended again).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from hastack.errors import StoreError

__all__ = ["HEDGE_EVERY", "hedged"]

T = TypeVar("T")

# A copy every 150 ms: a lost request is replaced within a few etcd heartbeats of the new
# leader's election, and a member that is merely slow sees at most a handful of copies.
HEDGE_EVERY = 0.15


async def hedged(
    call: Callable[[], Awaitable[T]], *, within: float, every: float = HEDGE_EVERY
) -> T:
    """The first answer of `call()`, made again every `every` seconds while no copy has
    answered, for `within` seconds at most (then the last error, or StoreError). A copy that
    fails is not an answer: the others (and the next) go on. The copies still running when
    one answers are cancelled."""
    deadline = time.monotonic() + within
    running: set[asyncio.Task[T]] = set()
    errors: list[BaseException] = []

    def collect(done: set[asyncio.Task[T]]) -> asyncio.Task[T] | None:
        for task in done:
            running.discard(task)
            exc = task.exception()
            if exc is None:
                return task
            if not isinstance(exc, StoreError):
                raise exc
            errors.append(exc)
        return None

    try:
        while time.monotonic() < deadline:
            running.add(asyncio.ensure_future(call()))
            slot_end = min(time.monotonic() + every, deadline)
            while (left := slot_end - time.monotonic()) > 0:
                if not running:
                    await asyncio.sleep(left)  # every copy failed at once: not faster
                    break
                done, _ = await asyncio.wait(
                    running, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                if (won := collect(done)) is not None:
                    return won.result()
        # Past the deadline: what still runs may answer within its own timeout.
        while running:
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            if (won := collect(done)) is not None:
                return won.result()
        raise errors[-1] if errors else StoreError("no answer")
    finally:
        for task in running:
            task.cancel()
        for task in running:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
