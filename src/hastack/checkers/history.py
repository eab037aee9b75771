"""Histories: operations recorded by workload clients, and the result every checker gives."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hastack.model.jsontext import json_lines

__all__ = ["COMPLETIONS", "CheckResult", "Op", "pair_ops", "parse_history"]

COMPLETIONS = ("ok", "fail", "info")
_STANDARD = ("process", "type", "f", "value", "time", "error")


@dataclass(frozen=True, slots=True)
class CheckResult:
    checker: str
    valid: bool | None  # None: nothing to judge (no records), never a silent pass
    summary: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "checker": self.checker,
            "valid": self.valid,
            "summary": self.summary,
            "details": self.details,
        }

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: "UNKNOWN"}[self.valid]


@dataclass(frozen=True, slots=True)
class Op:
    """An invocation with its completion (None when the run ended before it completed)."""

    process: str
    f: str
    value: Any  # the invocation's argument
    invoked: float
    type: str  # ok, fail, info (or info for a missing completion)
    result: Any  # the completion's value
    completed: float | None
    error: str | None = None
    # The completion's other fields (e.g. which database node served a write).
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def ok(self) -> bool:
        return self.type == "ok"


def parse_history(lines: Iterable[str]) -> list[dict[str, Any]]:
    """Whole JSON lines with a process, a type and a time; torn lines are skipped."""
    out = []
    for entry in json_lines(lines):
        if (
            isinstance(entry, dict)
            and "process" in entry
            and entry.get("type") in ("invoke", *COMPLETIONS)
            and isinstance(entry.get("time"), int | float)
        ):
            out.append(entry)
    return out


def pair_ops(history: Iterable[Mapping[str, Any]]) -> list[Op]:
    """Pair each invoke with the next completion of the same process, in time order.

    A process has at most one operation outstanding (clients are sequential). An invoke
    without a completion — the client was stopped mid-operation — becomes `info`: it may or
    may not have happened.
    """
    pending: dict[str, Mapping[str, Any]] = {}
    ops: list[Op] = []
    for e in sorted(history, key=lambda e: float(e["time"])):
        process = str(e["process"])
        if e["type"] == "invoke":
            if process in pending:
                ops.append(_op(pending.pop(process), None))
            pending[process] = e
        elif process in pending:
            ops.append(_op(pending.pop(process), e))
    ops += [_op(inv, None) for inv in pending.values()]
    ops.sort(key=lambda o: o.invoked)
    return ops


def _op(invoke: Mapping[str, Any], done: Mapping[str, Any] | None) -> Op:
    return Op(
        process=str(invoke["process"]),
        f=str(invoke.get("f", "")),
        value=invoke.get("value"),
        invoked=float(invoke["time"]),
        type=str(done["type"]) if done else "info",
        result=done.get("value") if done else None,
        completed=float(done["time"]) if done else None,
        error=(str(done["error"]) if done.get("error") else None) if done else "no completion",
        extra={k: v for k, v in done.items() if k not in _STANDARD} if done else {},
    )
