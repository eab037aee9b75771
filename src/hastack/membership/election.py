"""Electing the DC (designated controller): one agent holds the leader key on its lease.

The key is created only where it does not exist (compare create_revision == 0), so at most
one agent holds it at a time; its create_revision is the DC's epoch, which only grows. When
the DC's lease expires the key vanishes with it and the next agent to try wins.

`next_step` is the pure decision; `campaign` and `resign` are the only writes.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass

from hastack.model.members import ClusterSnapshot, DcRecord, NodeKind
from hastack.store import Compare, DeleteOp, GetOp, Keys, PutOp, Store

__all__ = ["Step", "StepKind", "campaign", "depose", "next_step", "resign"]


class StepKind(enum.Enum):
    CAMPAIGN = "campaign"  # no DC: try to become it
    LEAD = "lead"  # we are the DC, confirmed by the snapshot
    STEP_DOWN = "step-down"  # we thought we were DC, the store disagrees
    FOLLOW = "follow"  # someone else is DC
    WAIT = "wait"  # not eligible (remote node) or not a member yet
    REJOIN = "rejoin"  # our member key is missing though our lease is alive


@dataclass(frozen=True, slots=True)
class Step:
    kind: StepKind
    reason: str


def next_step(
    snapshot: ClusterSnapshot,
    *,
    node: str,
    kind: NodeKind,
    lease: int,
    held_epoch: int | None,
) -> Step:
    """What this agent should do about membership and the DC, given one snapshot."""
    member = snapshot.members.get(node)
    if member is None or member.lease != lease:
        return Step(StepKind.REJOIN, f"member key for {node} is missing or on another lease")
    dc = snapshot.dc
    if held_epoch is not None:
        if dc is not None and dc.node == node and dc.epoch == held_epoch and dc.lease == lease:
            return Step(StepKind.LEAD, f"{node} is DC at epoch {held_epoch}")
        holder = "nobody" if dc is None else f"{dc.node} at epoch {dc.epoch}"
        return Step(
            StepKind.STEP_DOWN, f"DC key at epoch {held_epoch} is gone; now held by {holder}"
        )
    if dc is not None:
        if dc.node == node and dc.lease == lease:
            # We won a campaign whose answer we did not see (an indeterminate write).
            return Step(StepKind.LEAD, f"{node} holds the DC key at epoch {dc.epoch}")
        return Step(StepKind.FOLLOW, f"{dc.node} is DC at epoch {dc.epoch}")
    if kind is not NodeKind.FULL:
        return Step(StepKind.WAIT, "no DC; remote nodes never become DC")
    return Step(StepKind.CAMPAIGN, "no DC: campaigning")


async def campaign(store: Store, keys: Keys, record: DcRecord) -> DcRecord | None:
    """Try to create the leader key on `record.lease`; the winner's record, or None if we lost.

    Raises an indeterminate store error if the outcome is unknown: the next snapshot tells.
    A key found on our own lease is ours (a copy of this campaign sent before, answered
    late or not at all: hastack.membership.hedge): won, at its create revision.
    """
    result = await store.txn(
        [Compare.absent(keys.dc)],
        success=[PutOp(keys.dc, record.encode(), lease=record.lease)],
        failure=[GetOp(keys.dc)],
    )
    if result.succeeded:
        return DcRecord(record.node, epoch=result.revision, lease=record.lease, since=record.since)
    held = result.reads[0] if result.reads else ()
    if held and held[0].lease == record.lease and record.lease:
        return DcRecord(record.node, epoch=held[0].create_revision, lease=record.lease,
                        since=record.since)  # fmt: skip
    return None


async def resign(store: Store, keys: Keys, epoch: int) -> bool:
    """Delete the leader key if it is still the one created at `epoch`."""
    result = await store.txn([Compare.created_at(keys.dc, epoch)], success=[DeleteOp(keys.dc)])
    return result.succeeded


async def depose(store: Store, keys: Keys, epoch: int, by: str) -> bool:
    """Delete another DC's leader key if it is still the one created at `epoch`, saying who
    did (`keys.deposed`); True when `by` deposed it. A copy of this call that finds the key
    gone reads who deposed it: `by` itself when an earlier copy (hastack.membership.hedge) did
    the work and its answer is still on the way."""
    mark = json.dumps({"epoch": epoch, "by": by}, sort_keys=True).encode()
    result = await store.txn(
        [Compare.created_at(keys.dc, epoch)],
        success=[DeleteOp(keys.dc), PutOp(keys.deposed, mark)],
        failure=[GetOp(keys.deposed)],
    )
    if result.succeeded:
        return True
    found = result.reads[0] if result.reads else ()
    return bool(found) and found[0].value == mark
