"""The liveness threads' CPU priority (hastack.membership.priority)."""

from __future__ import annotations

import errno
import os
import threading
from typing import Any

import pytest

from hastack.membership import priority
from hastack.membership.priority import favour_this_thread


def _in_thread(fn: Any) -> Any:
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


@pytest.mark.skipif(os.geteuid() != 0, reason="lowering a nice value needs root")
def test_only_the_calling_thread_is_favoured_and_threads_it_starts_inherit_it() -> None:
    before = os.getpriority(os.PRIO_PROCESS, 0)

    def favoured() -> tuple[bool, int, int]:
        # A thread starts at its creator's nice, which an earlier test may have favoured:
        # start this one from 0 (raising a nice value needs no privilege).
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 0)
        ok = favour_this_thread(-5)
        mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        child = _in_thread(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return ok, mine, child

    assert _in_thread(favoured) == (True, -5, -5)
    assert os.getpriority(os.PRIO_PROCESS, 0) == before  # the main thread keeps its own


def test_a_refusal_is_said_and_the_thread_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(which: int, who: int, value: int) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(priority.os, "getpriority", lambda which, who: 0)
    monkeypatch.setattr(priority.os, "setpriority", refuse)
    assert _in_thread(favour_this_thread) is False
    assert "keeps its CPU priority (nice -10 not allowed: Permission denied)" in caplog.text


def test_a_thread_already_at_that_priority_or_higher_is_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(priority.os, "getpriority", lambda which, who: -15)
    monkeypatch.setattr(priority.os, "setpriority", lambda which, who, v: calls.append(v))
    assert _in_thread(favour_this_thread) is True
    assert calls == []
