"""Quorum arithmetic. Pure.

hastack has no votes of its own: the cluster is quorate exactly when the etcd cluster has a
majority of its members healthy, and a node is in the quorate partition exactly when it holds
a live lease (it could renew it through that majority).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["QuorumView", "majority", "quorum_view"]


def majority(members: int) -> int:
    """Members needed for a quorum of `members`."""
    return members // 2 + 1


@dataclass(frozen=True, slots=True)
class QuorumView:
    healthy: int
    total: int

    @property
    def needed(self) -> int:
        return majority(self.total)

    @property
    def is_quorate(self) -> bool:
        return self.total > 0 and self.healthy >= self.needed

    @property
    def failures_tolerated(self) -> int:
        """More members that may fail before quorum is lost."""
        return max(0, self.healthy - self.needed)


def quorum_view(healthy: int, total: int) -> QuorumView:
    if not 0 <= healthy <= total:
        raise ValueError(f"healthy members ({healthy}) must be between 0 and total ({total})")
    return QuorumView(healthy, total)
