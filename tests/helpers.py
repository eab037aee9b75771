"""Shared test helpers: waiting with a bound, picking loopback addresses nobody else uses,
running the `hastack` command against a test cluster."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from hastack.lab.local import LocalCluster

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


def hastack_cli(
    lc: LocalCluster, *args: str, stdin: str | None = None, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """`hastack ARGS --config CLIENT.yaml` against the test cluster `lc`, never raising."""
    where = ["--config", str(lc.client_config)]
    return subprocess.run(
        [sys.executable, "-m", "hastack", *args, *where],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
