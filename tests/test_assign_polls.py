"""The polling checker on made-up polls: gaps outside the excused intervals fail, inside pass;
duplicates are counted."""

from __future__ import annotations

from hastack.checkers import check_polls

R = ["a", "b", "c"]


def polls(
    intervals: range, owners: dict[str, str], skip: set[tuple[int, str]] = frozenset()
) -> list[dict[str, object]]:  # type: ignore[assignment]
    return [
        {"poll": r, "node": n, "time": k * 5.0 + 0.5}
        for k in intervals
        for r, n in owners.items()
        if (k, r) not in skip
    ]


def test_every_interval_polled_passes() -> None:
    result = check_polls(polls(range(10), {"a": "n1", "b": "n2", "c": "n3"}), [], resources=R,
                         interval=5.0, start=0.0, end=50.0, excused=0)  # fmt: skip
    assert result.valid is True
    assert result.details["missed_polls"] == 0


def test_gaps_are_excused_only_right_after_a_crash() -> None:
    owners = {"a": "n1", "b": "n2", "c": "n3"}
    crash = [{"f": "crash", "host": "n3", "time": 21.0}]
    lost = {(4, "c"), (5, "c"), (6, "c")}
    history = [
        *polls(range(10), owners, lost),
        {"poll": "c", "node": "n1", "time": 5.0 * 4 + 0.7},  # taken over within interval 4
        {"poll": "a", "node": "n2", "time": 5.0 * 4 + 0.8},  # a duplicate: counted, allowed
    ]
    ok = check_polls(history, crash, resources=R, interval=5.0, start=0.0, end=50.0, excused=3)
    assert ok.valid is True
    assert ok.details["missed_polls"] == 2  # interval 4 was polled once by n1
    assert ok.details["duplicate_polls"] == 1
    tight = check_polls(history, crash, resources=R, interval=5.0, start=0.0, end=50.0, excused=1)
    assert tight.valid is False
    assert "interval 6: 1 unpolled, e.g. c" in tight.summary


def test_nothing_polled_is_unknown() -> None:
    assert (
        check_polls([], [], resources=R, interval=5.0, start=0.0, end=50.0, excused=0).valid is None
    )
