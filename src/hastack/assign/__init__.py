"""Work assignment (docs/assign.md): which running instance of a clone serves which entity.

Pure: `placement` decides the sticky map (fill after a failure, explicit rebalance), `grants`
applies release-before-grant to it. The DC calls them (hastack.controller); the node side is
in hastack.executor (the assignment file, the notification), the operator's side in
hastack.ops.assign.
"""

from __future__ import annotations

from hastack.assign.grants import GrantView, grants
from hastack.assign.placement import Move, Placement, Rules, loads, place, rank, rebalance

__all__ = [
    "GrantView",
    "Move",
    "Placement",
    "Rules",
    "grants",
    "loads",
    "place",
    "rank",
    "rebalance",
]
