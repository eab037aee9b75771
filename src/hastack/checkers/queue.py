"""The total-queue checker: every confirmed message is consumed, none unexpected.

`enqueue` puts a unique value (ok once the broker confirmed it); `dequeue` takes one message
(its completion's value) and `drain` takes what is left at the end (a list). A confirmed
message never dequeued is *lost*; a dequeued value never enqueued is *unexpected*. A value
dequeued twice is *duplicated* — reported, but allowed: at-least-once delivery is what AMQP
promises across failures. Enqueues that ended unknown (`info`) and still arrived are
*recovered*.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from hastack.checkers.history import CheckResult, pair_ops

__all__ = ["check_total_queue"]


def check_total_queue(history: Iterable[Mapping[str, Any]]) -> CheckResult:
    ops = pair_ops(history)
    enqueues = [o for o in ops if o.f == "enqueue"]
    attempted = {o.value for o in enqueues}
    confirmed = {o.value for o in enqueues if o.ok}
    unknown = {o.value for o in enqueues if o.type == "info"}
    taken: Counter[Any] = Counter()
    for o in ops:
        if not o.ok:
            continue
        if o.f == "dequeue" and o.result is not None:
            taken[o.result] += 1
        elif o.f == "drain" and isinstance(o.result, list):
            taken.update(o.result)
    if not enqueues:
        return CheckResult("total-queue", None, "no enqueue in the history: cannot judge")
    dequeued = set(taken)
    lost = sorted(confirmed - dequeued, key=str)
    unexpected = sorted(dequeued - attempted, key=str)
    duplicated = sorted((v for v, n in taken.items() if n > 1), key=str)
    recovered = sorted(unknown & dequeued, key=str)
    valid = not lost and not unexpected
    summary = (
        f"{len(confirmed)} confirmed, {len(dequeued)} consumed, {len(lost)} lost, "
        f"{len(unexpected)} unexpected, {len(duplicated)} duplicated, "
        f"{len(recovered)} of {len(unknown)} unknown recovered"
    )
    return CheckResult(
        "total-queue",
        valid,
        summary,
        {
            "attempted": len(attempted),
            "confirmed": len(confirmed),
            "consumed": len(dequeued),
            "lost": lost,
            "unexpected": unexpected,
            "duplicated": duplicated,
            "recovered": recovered,
        },
    )
