"""Checkers for the cache-aside workload (`cache-kv`). Pure.

* `check_stale_reads` — a read returning an older version of a key than one its own client
  (the key's only writer, one operation at a time) had already had acknowledged. Writes that
  ended unknown (`info`) may have happened: a read may return them, and a read of an older
  version than the last *acknowledged* one is still stale.
* `check_cache_service` — through the faults: no request failed, latency's 99th percentile
  stayed within `p99_allowance` of the baseline (the requests before the first fault), and the
  hit ratio was back at `hit_ratio` within `recover_within` seconds of every fault and repair
  (of those whose operation is in `judged`, when given: while a server is cut off its keys
  are misses by design, and only its return is judged).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from hastack.checkers.history import CheckResult, Op, pair_ops

__all__ = ["check_cache_service", "check_stale_reads"]


def check_stale_reads(history: Iterable[Mapping[str, Any]]) -> CheckResult:
    ops = [o for o in pair_ops(history) if o.f in ("read", "write")]
    if not any(o.f == "read" and o.ok for o in ops):
        return CheckResult("stale-read", None, "no successful read in the history")
    acked: dict[str, int] = {}
    stale: list[dict[str, Any]] = []
    reads = 0
    for o in sorted(ops, key=lambda x: x.invoked):
        if o.f == "write":
            if o.ok and isinstance(o.value, dict):
                key, version = str(o.value["key"]), int(o.value["version"])
                acked[key] = max(acked.get(key, 0), version)
            continue
        if not o.ok or not isinstance(o.result, dict):
            continue
        reads += 1
        key = str(o.result.get("key"))
        got = o.result.get("version")
        want = acked.get(key)
        if want is not None and (got is None or int(got) < want):
            stale.append({"key": key, "read": got, "acknowledged": want, "time": o.invoked})
    summary = f"{reads} reads, {len(stale)} stale"
    if stale:
        first = stale[0]
        summary += (
            f" (first: {first['key']} read version {first['read']} after "
            f"{first['acknowledged']} was acknowledged)"
        )
    return CheckResult("stale-read", not stale, summary, {"stale": stale[:50], "reads": reads})


def _p99(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def _hit(o: Op) -> bool:
    return isinstance(o.result, dict) and o.result.get("cache") == "hit"


def _hit_ratio_back(reads: list[Op], since: float, until: float, ratio: float) -> float | None:
    """Seconds after `since` until a one-second window of reads has `ratio` hits."""
    window = [o for o in reads if since <= o.invoked <= until]
    for i, first in enumerate(window):
        second = [o for o in window[i:] if o.invoked < first.invoked + 1.0]
        if len(second) < 5:
            continue
        hits = sum(
            1 for o in second if isinstance(o.result, dict) and o.result.get("cache") == "hit"
        )
        if hits / len(second) >= ratio:
            return first.invoked - since
    return None


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f}ms"


def check_cache_service(
    history: Iterable[Mapping[str, Any]],
    nemesis: Iterable[Mapping[str, Any]],
    *,
    p99_allowance: float,
    hit_ratio: float = 0.9,
    recover_within: float | None = None,
    judged: Collection[str] | None = None,
) -> CheckResult:
    ops = [o for o in pair_ops(history) if o.f in ("read", "write")]
    events = sorted(nemesis, key=lambda e: float(e["time"]))
    if not ops:
        return CheckResult("cache-service", None, "no cache operation in the history")
    failed = [o for o in ops if not o.ok]
    latency = [(o.invoked, (o.completed or o.invoked) - o.invoked) for o in ops if o.ok]
    first_fault = float(events[0]["time"]) if events else float("inf")
    baseline = _p99([d for t, d in latency if t < first_fault])
    during = _p99([d for t, d in latency if t >= first_fault])
    reads = sorted((o for o in ops if o.f == "read" and o.ok), key=lambda o: o.invoked)
    end = max(o.invoked for o in ops)
    recoveries: dict[str, float | None] = {}
    late: list[str] = []
    for n, e in enumerate(events):
        until = float(events[n + 1]["time"]) if n + 1 < len(events) else end
        label = f"{e.get('f')} {e.get('host') or ''}".strip() + f" at {float(e['time']):.1f}"
        if judged is not None and e.get("f") not in judged:
            label += " (not judged)"
        back = recoveries[label] = _hit_ratio_back(reads, float(e["time"]), until, hit_ratio)
        if (judged is None or e.get("f") in judged) and (
            back is None or (recover_within is not None and back > recover_within)
        ):
            late.append(label)
    slow = baseline is not None and during is not None and during > baseline + p99_allowance
    valid = not failed and not slow and not late
    summary = (
        f"{len(ops)} requests, {len(failed)} failed; p99 {_ms(baseline)} before the faults, "
        f"{_ms(during)} after (allowed +{p99_allowance * 1000:.0f}ms); hit ratio ≥ "
        f"{hit_ratio:.0%} again: "
        + "; ".join(f"{k}: {'never' if v is None else f'{v:.1f}s'}" for k, v in recoveries.items())
    )
    return CheckResult(
        "cache-service",
        valid,
        summary,
        {"failed": len(failed), "errors": sorted({str(o.error) for o in failed})[:20],
         "p99_baseline": baseline, "p99_during": during, "recoveries": recoveries},
    )  # fmt: skip
