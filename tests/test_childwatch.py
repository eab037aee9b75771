"""Children waited for through pidfds on the loop that started them (hastack.childwatch):
exit codes and signals come back as before, from the main loop and from a loop in another
thread, with no thread started per child."""

from __future__ import annotations

import asyncio
import sys
import threading
import warnings
from collections.abc import Iterator

import pytest

from hastack import childwatch

pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12 waits through pidfds itself"),
]


@pytest.fixture
def watcher() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        before = asyncio.get_child_watcher()
    assert childwatch.install()
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            asyncio.get_child_watcher().close()
            asyncio.set_child_watcher(before)


async def exits(codes: list[int]) -> tuple[list[int | None], set[str]]:
    """Run `sh -c 'exit N'` for each code at once (a negative one: killed by that signal);
    their return codes, and the names of the threads seen while they ran."""
    seen: set[str] = set()

    async def one(code: int) -> int | None:
        script = f"kill -{-code} $$" if code < 0 else f"sleep 0.05; exit {code}"
        proc = await asyncio.create_subprocess_exec("sh", "-c", script)
        seen.update(t.name for t in threading.enumerate())
        await proc.wait()
        return proc.returncode

    return list(await asyncio.gather(*(one(c) for c in codes))), seen


CODES = [0, 1, 7, 0, 3, -9, 0, 5] * 4


async def test_exit_codes_and_signals_come_back_with_no_thread_per_child(watcher: None) -> None:
    codes, threads = await exits(CODES)
    assert codes == CODES
    assert not [t for t in threads if "waitpid-" in t]


async def test_the_default_watcher_starts_a_thread_per_child() -> None:
    """The negative control: the thread check above sees Python 3.11's own watcher."""
    codes, threads = await exits(CODES)
    assert codes == CODES
    assert [t for t in threads if "waitpid-" in t]


def test_a_loop_in_another_thread_gets_its_children_too(watcher: None) -> None:
    found: list[list[int | None]] = []
    thread = threading.Thread(target=lambda: found.append(asyncio.run(exits(CODES))[0]))
    thread.start()
    thread.join(20)
    assert found == [CODES]
