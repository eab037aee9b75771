"""Shared test helpers: waiting with a bound, picking loopback addresses nobody else uses."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def random_loopback_base() -> str:
    """A /24 on loopback unlikely to be used by another run: 127.A.B.10, nodes at .11, .12 ..."""
    return f"127.{random.randint(100, 254)}.{random.randint(1, 254)}.10"


def wait_until(predicate: Callable[[], T], timeout: float, interval: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


async def async_wait_until(
    predicate: Callable[[], Awaitable[T]], timeout: float, interval: float = 0.05
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
