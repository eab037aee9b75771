"""The set checker: every acknowledged add is present in the final read.

Clients `add` unique elements, then one `read` at the end returns the whole set. An element
whose add was acknowledged (ok) but is missing from the read is *lost* — the promise "no
acknowledged write lost" was broken. An element read but never added is *unexpected*. Adds
that ended in `info` (unknown) may go either way; those found are counted as recovered.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hastack.checkers.history import CheckResult, pair_ops

__all__ = ["check_set"]


def check_set(history: Iterable[Mapping[str, Any]]) -> CheckResult:
    ops = pair_ops(history)
    adds = [o for o in ops if o.f == "add"]
    attempted = {o.value for o in adds}
    acknowledged = {o.value for o in adds if o.ok}
    unknown = {o.value for o in adds if o.type == "info"}
    reads = [o for o in ops if o.f == "read" and o.ok and isinstance(o.result, list)]
    if not reads:
        return CheckResult(
            "set",
            None,
            f"no successful final read ({len(acknowledged)} adds acknowledged): cannot judge",
            {"acknowledged": len(acknowledged)},
        )
    final = set(reads[-1].result)
    lost = sorted(acknowledged - final, key=str)
    unexpected = sorted(final - attempted, key=str)
    recovered = sorted(unknown & final, key=str)
    valid = not lost and not unexpected
    summary = (
        f"{len(acknowledged)} acknowledged, {len(final)} read back, {len(lost)} lost, "
        f"{len(unexpected)} unexpected, {len(recovered)} of {len(unknown)} unknown recovered"
    )
    return CheckResult(
        "set",
        valid,
        summary,
        {
            "attempted": len(attempted),
            "acknowledged": len(acknowledged),
            "read": len(final),
            "lost": lost,
            "unexpected": unexpected,
            "recovered": recovered,
            "unknown": len(unknown),
        },
    )
