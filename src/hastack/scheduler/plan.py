"""The scheduler's output: where every resource instance ends up, and the actions to get there."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from hastack.model.config import Role

__all__ = ["Action", "ActionKind", "Assignment", "Notification", "Plan"]


class ActionKind(enum.StrEnum):
    FENCE = "fence"
    STOP = "stop"
    DEMOTE = "demote"
    START = "start"
    PROMOTE = "promote"
    NOTIFY = "notify"


@dataclass(frozen=True, slots=True)
class Assignment:
    """The target of one primitive instance."""

    instance: str  # `vip`, or `memcached:0` for a clone instance
    primitive: str  # the primitive's id in the configuration
    top: str  # the top-level resource it belongs to (itself, its group, or its clone)
    node: str | None  # None: stopped
    role: Role  # Stopped, Started, Unpromoted or Promoted
    managed: bool = True  # False: left as it is (maintenance, is-managed=false, blocked)


@dataclass(frozen=True, slots=True)
class Notification:
    """What a NOTIFY action tells its recipient: Pacemaker's `notify_*` meta variables
    (without the `OCF_RESKEY_CRM_meta_` prefix), e.g. ("notify_type", "pre")."""

    type: str  # pre, post
    operation: str  # start, stop, promote, demote
    variables: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Action:
    id: int
    kind: ActionKind
    node: str
    instance: str | None  # None for fencing
    reason: str
    after: tuple[int, ...] = ()  # ids of actions that must complete first
    notify: Notification | None = None  # NOTIFY actions only


@dataclass(frozen=True)
class Plan:
    assignments: tuple[Assignment, ...]
    actions: tuple[Action, ...]
    warnings: tuple[str, ...] = ()
    # When a failure it counted expires (failure-timeout): it is to be made again then.
    expires_at: float | None = None

    def placement(self) -> Mapping[str, tuple[str | None, Role]]:
        return {a.instance: (a.node, a.role) for a in self.assignments}
