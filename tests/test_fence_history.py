"""The fencing history's one rule about order (pure): once a success is recorded, a failure
that began before it finished is not added — the node stays fenced, and the key is not
written again (its revision is what says "fenced after it joined")."""

from __future__ import annotations

from hastack.model.fencing import FenceRecord, with_record


def record(result: str, started: float, finished: float, by: str = "n2") -> FenceRecord:
    return FenceRecord("n1", "off", result, 1, ("d",), "why", started, finished, by, 3)


def test_a_failure_after_a_success_it_overlapped_is_not_added() -> None:
    confirmed = record("success", 10.0, 10.0, by="cli")
    late_failure = record("failed", 8.0, 12.0)  # the DC's device, running while the operator said
    assert with_record([confirmed], late_failure) is None


def test_a_failure_that_began_after_the_success_is_added() -> None:
    fenced = record("success", 10.0, 11.0)
    later = record("failed", 11.5, 12.0)  # a new life's fencing: it is news
    assert with_record([fenced], later) == [fenced, later]


def test_successes_and_a_first_failure_are_always_added() -> None:
    failed = record("failed", 1.0, 2.0)
    assert with_record([], failed) == [failed]
    ok = record("success", 1.5, 3.0)
    assert with_record([failed], ok) == [failed, ok]
    again = record("success", 2.0, 4.0)
    assert with_record([failed, ok], again) == [failed, ok, again]


def test_a_record_already_in_the_history_is_not_added_again() -> None:
    """A copy of the DC's record write, re-sent while the first was unanswered, reads the
    history the first wrote: appending again would be a second fencing (counted twice)."""
    ok = record("success", 1.0, 2.0)
    assert with_record([ok], ok) is None
    assert with_record([ok], record("success", 1.0, 2.5)) is not None  # another fencing
