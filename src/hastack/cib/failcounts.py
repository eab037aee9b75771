"""Fail counts and failure expiry, as Pacemaker's failcounts.c reads them.

    fail_count(attrs, rid, info) -> (count, last failure time)
    blocks_expiry(attrs, rid, info, ops) -> bool    on-fail=block keeps failures forever
    is_expired(op, attrs, rid, info, now) -> bool   failure-timeout lets this failure go

A resource's fail count is the sum of the node's `fail-count-<rsc>#<op>_<interval>` transient
attributes (those of every instance, for an anonymous clone), and its last failure the newest
`last-failure-<rsc>#...`. Pure: the node's attributes and the time are passed in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from hastack.cib.cibxml import parse_int, parse_score_text
from hastack.cib.operations import ExecStatus, Op
from hastack.cib.resources import PrimitiveInfo
from hastack.model.ocf import OcfRc
from hastack.model.scores import INFINITY, add_scores
from hastack.model.state import base_id

__all__ = ["blocks_expiry", "fail_count", "is_expired"]

_PROBE_RESULTS = (
    OcfRc.SUCCESS,
    OcfRc.NOT_RUNNING,
    OcfRc.RUNNING_PROMOTED,
    OcfRc.DEGRADED,
    OcfRc.DEGRADED_PROMOTED,
)


def fail_count(
    attrs: Mapping[str, str], rid: str, info: PrimitiveInfo | None
) -> tuple[int, float | None]:
    unique = info is not None and info.unique
    name = rid if unique else base_id(rid)
    instance = "" if unique else r"(:[0-9]+)?"
    count_re = re.compile(rf"^fail-count-{re.escape(name)}{instance}#.+_[0-9]+$")
    last_re = re.compile(rf"^last-failure-{re.escape(name)}{instance}#.+_[0-9]+$")
    total = 0
    last: float | None = None
    for key, value in attrs.items():
        if count_re.match(key):
            score = parse_score_text(value)
            if score is not None:
                total = add_scores(total, score)
        elif last_re.match(key):
            when = parse_int(value)
            if when is not None and (last is None or when > last):
                last = float(when)
    return max(0, min(total, INFINITY)), last


def blocks_expiry(attrs: Mapping[str, str], rid: str, info: PrimitiveInfo, ops: list[Op]) -> bool:
    """Pacemaker ignores failure-timeout for a resource whose failed operation is
    configured on-fail=block (failcounts.c, block_failure)."""
    if info.failure_timeout <= 0 or not fail_count(attrs, rid, info)[0]:
        return False
    blocking = {key for key, value in info.on_fail.items() if (value or "").lower() == "block"}
    return any(
        (op.task, op.interval_ms) in blocking
        and (op.rc != op.expected or (op.xml.get("id") or "").endswith("_last_failure_0"))
        for op in ops
    )


def is_expired(
    op: Op, attrs: Mapping[str, str], rid: str, info: PrimitiveInfo | None, now: float
) -> bool:
    """Whether failure-timeout has passed for this operation's result — and for the newest
    failure counted on the node, while the fail count is not zero."""
    if op.status == ExecStatus.NOT_INSTALLED or info is None or info.failure_timeout <= 0:
        return False
    if op.last_change is None:
        return False
    timeout = info.failure_timeout
    expired = now >= op.last_change + timeout
    if not expired:
        return False
    count, last = fail_count(attrs, rid, info)
    if count:
        unexpired = last is None or now < last + timeout
        if unexpired:
            return False
    # A probe's own result never expires: it is what the node found.
    return not (op.is_probe and op.rc in _PROBE_RESULTS)
