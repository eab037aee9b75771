"""What the DC wants a node to run: the value of `<prefix>/target/<node>`.

    {"epoch": 42, "config": 17,
     "resources": {"vip": "Started", "galera:1": "Promoted", "web": "Stopped"},
     "unmanaged": ["legacy"],
     "notify": [{"key": "42.3.7", "instance": "rmq:1",
                 "variables": {"notify_type": "pre", "notify_operation": "start", ...}}],
     "assigned": {"routers": {"r03": "active", "r07": "standby"}}}

Written only by the DC (by CAS on its leader key, so a deposed DC cannot write). An instance
not listed is to be stopped if it runs; `unmanaged` ones are left exactly as they are.
`notify` lists clone notifications to run once each (by key), docs/executor.md. `assigned`
is what each assignment grants this node now (docs/assign.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from hastack.model.assign import AssignRole, decode_grants, encode_grants
from hastack.model.config import Role
from hastack.model.jsontext import json_object

__all__ = ["NodeTarget", "NotifyRequest", "WrittenTargets", "decode_target"]


@dataclass(frozen=True, slots=True)
class NotifyRequest:
    """Run `notify` once on `instance` with these `notify_*` variables."""

    key: str
    instance: str
    variables: Mapping[str, str]

    def to_json(self) -> dict[str, object]:
        return {"key": self.key, "instance": self.instance, "variables": dict(self.variables)}


@dataclass(frozen=True, slots=True)
class NodeTarget:
    epoch: int
    config_revision: int
    resources: Mapping[str, Role] = field(default_factory=dict)
    unmanaged: frozenset[str] = frozenset()
    notify: tuple[NotifyRequest, ...] = ()
    at: float = 0.0  # wall clock when the DC wrote it, for display (`hastack status`)
    # Work assignment grants: name -> entity -> role (docs/assign.md).
    assigned: Mapping[str, Mapping[str, AssignRole]] = field(default_factory=dict)

    def encode(self) -> bytes:
        doc: dict[str, object] = {
            "epoch": self.epoch,
            "config": self.config_revision,
            "resources": {k: v.value for k, v in sorted(self.resources.items())},
            "unmanaged": sorted(self.unmanaged),
        }
        if self.at:
            doc["at"] = self.at
        if self.notify:
            doc["notify"] = [n.to_json() for n in self.notify]
        assigned = encode_grants(self.assigned)
        if assigned:
            doc["assigned"] = assigned
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    def same_work(self, other: NodeTarget | None, *, taken: bool = False) -> bool:
        """`other` asks the node the same work as this one, whatever the epoch that wrote it:
        the same instances, roles, notifications and grants, for the same configuration — or,
        when the node has taken `other` on in its current life (`taken`: its report says it
        works on that very target, `NodeReport.working`), for an older one.

        A target's `config` is the configuration the DC planned for when it wrote the target.
        A node takes a newly written target on only while it holds exactly that configuration
        (an older one: it waits for the newer; a newer one: the target is superseded, answered
        for and not done, `executor.lrm`). A target it has taken on stays its work through
        later configurations until the DC writes another one: it keeps carrying it out with
        the configuration it holds. So when the DC's plan for a newer configuration asks the
        same of a node that took its target on, the target already says it: restamping it
        only for the revision had every node take its target again and report it, a write and
        a report per node for each configuration change (docs/control-plane.md, "What a
        target's configuration revision promises"). A target the node never took (superseded,
        or not seen yet) is no such thing: its work is not under way there, and the
        acknowledgement of a superseded target says only that nothing of it was done."""
        return (
            other is not None
            and (
                other.config_revision == self.config_revision
                or (taken and other.config_revision < self.config_revision)
            )
            and dict(other.resources) == dict(self.resources)
            and other.unmanaged == self.unmanaged
            and other.notify == self.notify
            and encode_grants(other.assigned) == encode_grants(self.assigned)
        )

    def stands_in(self, stored: NodeTarget | None, *, taken: bool) -> bool:
        """May `stored`, the node's target as the store holds it, stay there in place of this
        one (not written again)? When this DC wrote it (the same epoch) and it asks the same
        work (`same_work`)."""
        return (
            stored is not None
            and stored.epoch == self.epoch
            and self.same_work(stored, taken=taken)
        )


class WrittenTargets:
    """The targets a DC wrote, each with the store revision of its write, until the DC's view
    shows that revision. The DC compares what it decides with the targets in its view and
    writes those that differ; a view that has not yet caught up with the DC's own last write
    still holds the targets from before it, and each cycle wrote them all again. Measured at
    50 computes: the 53 targets written 8 times in 2 s while the DC's watch lagged, each write
    one more event for every node and 53 for the DC itself (docs/control-plane.md). Pure.

    Only the DC of one epoch writes targets, each write by CAS on its leader key: a write
    that succeeded at revision R is what the store holds for that node until a later
    revision, which the view then shows. A new epoch starts empty."""

    def __init__(self) -> None:
        self.epoch: int | None = None
        self._written: dict[str, tuple[int, NodeTarget | None]] = {}
        # node -> (revision of this DC's write, revision of the target it restamped): the
        # write only put under this epoch the work of a target the view showed (below).
        self._restamped: dict[str, tuple[int, int]] = {}

    def record(
        self,
        epoch: int,
        revision: int,
        written: Mapping[str, NodeTarget | None],
        restamped: Mapping[str, int] | None = None,
    ) -> None:
        """`written` went out at `revision` by the DC of `epoch` (None: the key deleted);
        `restamped`: those of them that are the same work as the target the view showed for
        the node, written at the revision given, from an older DC (`restamps`)."""
        if epoch != self.epoch:
            self._start(epoch)
        for node, target in written.items():
            self._written[node] = (revision, target)
            if restamped is not None and node in restamped:
                self._restamped[node] = (revision, restamped[node])
            else:
                self._restamped.pop(node, None)

    def restamps(self) -> dict[str, tuple[int, int]]:
        """node -> (revision R of its target, revision P): this DC wrote R with the very work
        of the older DC's target written at P, only to put it under its own epoch (a node
        refuses an older DC's target). A node that has finished P has nothing to do for R:
        the new DC need not wait for it to say so (`controller._unsettled`)."""
        return dict(self._restamped)

    def _start(self, epoch: int) -> None:
        self.epoch, self._written, self._restamped = epoch, {}, {}

    def nodes(self) -> set[str]:
        return set(self._written)

    def current(
        self, epoch: int, node: str, seen: NodeTarget | None, seen_revision: int, view_revision: int
    ) -> tuple[NodeTarget | None, bool]:
        """The node's target as the store holds it, and whether that is the view's own:
        `seen` (from a view at `view_revision`, where the key was last written at
        `seen_revision`) unless this DC wrote the key at a revision the view has not reached."""
        if epoch != self.epoch:
            self._start(epoch)
        mine = self._written.get(node)
        if mine is None:
            return seen, True
        revision, target = mine
        if view_revision >= revision or seen_revision >= revision:
            del self._written[node]  # the view shows it now (or something newer)
            return seen, True
        return target, False


def decode_target(raw: bytes) -> NodeTarget:
    data = json_object(raw)
    epoch, config = data.get("epoch"), data.get("config", 0)
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch <= 0:
        raise ValueError("'epoch' must be a positive integer")
    if isinstance(config, bool) or not isinstance(config, int):
        raise ValueError("'config' must be an integer")
    raw_resources = data.get("resources", {})
    if not isinstance(raw_resources, dict):
        raise ValueError("'resources' must be an object")
    resources: dict[str, Role] = {}
    for name, role in raw_resources.items():
        try:
            resources[str(name)] = Role(role)
        except ValueError:
            raise ValueError(f"resource {name!r}: unknown role {role!r}") from None
    unmanaged = data.get("unmanaged", [])
    if not isinstance(unmanaged, list) or not all(isinstance(u, str) for u in unmanaged):
        raise ValueError("'unmanaged' must be a list of names")
    notify = _notify(data.get("notify", []))
    at = data.get("at", 0.0)
    if isinstance(at, bool) or not isinstance(at, int | float):
        raise ValueError("'at' must be a number")
    assigned = decode_grants(data.get("assigned", {}), "assigned")
    return NodeTarget(epoch, config, resources, frozenset(unmanaged), notify, float(at), assigned)


def _notify(raw: object) -> tuple[NotifyRequest, ...]:
    if not isinstance(raw, list):
        raise ValueError("'notify' must be a list")
    out = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise ValueError(f"notify[{index}] must be an object")
        key, instance, variables = item.get("key"), item.get("instance"), item.get("variables")
        if not isinstance(key, str) or not isinstance(instance, str):
            raise ValueError(f"notify[{index}] needs 'key' and 'instance' strings")
        if not isinstance(variables, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in variables.items()
        ):
            raise ValueError(f"notify[{index}].variables must map strings to strings")
        out.append(NotifyRequest(key, instance, variables))
    return tuple(out)
