"""A saved cluster state as YAML: for `hastack simulate --state FILE` and the golden tests.

config: {...}              a cluster configuration (as for `hastack config apply`)
state:
  quorum: true
  now: 1700000000          wall time, for failure-timeout
  fenced: [n3]             nodes whose fencing is confirmed
  nodes:
    n1: {}                 online, nothing special
    n2: {online: false}
    n3: {online: false, unclean: true}
    n4: {standby: true, attributes: {master-galera: "100"}}
  resources:
    - {resource: vip, node: n1}                         Started
    - {resource: galera, node: n4, role: Promoted}
    - {resource: web, node: n1, failed: true, fail-count: 1, last-failure: 1699999990}
"""

from __future__ import annotations

from typing import Annotated, Any

import pydantic

from hastack.model.base import Duration, Name, Spec
from hastack.model.config import ClusterConfig, ParamValue, Role, RoleName
from hastack.model.document import Document, Loc, load_yaml, validate
from hastack.model.members import NodeKind
from hastack.model.scores import INFINITY
from hastack.model.state import ClusterState, NodeStatus, ResourceStatus

__all__ = ["NodeEntry", "ResourceEntry", "SavedState", "StateEntry", "parse_saved_state"]


class NodeEntry(Spec):
    online: bool = True
    unclean: bool = False
    shutdown: bool = False
    standby: bool = False
    maintenance: bool = False
    kind: NodeKind = NodeKind.FULL
    attributes: dict[str, ParamValue] = pydantic.Field(default_factory=dict)


def _count(value: object) -> object:
    if isinstance(value, str) and value.strip().upper() in ("INFINITY", "+INFINITY"):
        return INFINITY
    return value


class ResourceEntry(Spec):
    resource: str
    node: Name
    role: RoleName = Role.STARTED
    failed: bool = False
    blocked: bool = False
    fail_count: Annotated[int, pydantic.Field(ge=0)] = 0
    last_failure: float | None = None
    failed_op: str | None = None  # which operation failed (for on-fail)
    failed_interval: Duration = 0.0

    @pydantic.field_validator("fail_count", mode="before")
    @classmethod
    def _infinity(cls, value: Any) -> Any:
        return _count(value)


class StateEntry(Spec):
    quorum: bool = True
    now: float = 0.0
    fenced: list[Name] = pydantic.Field(default_factory=list)
    nodes: dict[Name, NodeEntry] = pydantic.Field(default_factory=dict)
    resources: list[ResourceEntry] = pydantic.Field(default_factory=list)

    def to_state(self) -> ClusterState:
        return ClusterState(
            nodes={
                name: NodeStatus(
                    name=name,
                    online=n.online,
                    unclean=n.unclean,
                    shutdown=n.shutdown,
                    standby=n.standby,
                    maintenance=n.maintenance,
                    kind=n.kind,
                    attributes=dict(n.attributes),
                )
                for name, n in self.nodes.items()
            },
            resources=tuple(
                ResourceStatus(
                    resource=r.resource,
                    node=r.node,
                    role=r.role,
                    failed=r.failed,
                    blocked=r.blocked,
                    fail_count=r.fail_count,
                    last_failure=r.last_failure,
                    failed_op=r.failed_op,
                    failed_interval=r.failed_interval,
                )
                for r in self.resources
            ),
            has_quorum=self.quorum,
            now=self.now,
            fenced=frozenset(self.fenced),
        )


class SavedState(Spec):
    description: str = ""
    config: ClusterConfig = ClusterConfig()
    state: StateEntry = StateEntry()
    # golden tests: what the scheduler must decide
    expect: dict[str, Any] | None = None

    def problems(self) -> list[tuple[Loc, str]]:
        found = [(("config", *loc), msg) for loc, msg in self.config.reference_problems()]
        for index, r in enumerate(self.state.resources):
            if r.node not in self.state.nodes:
                found.append(
                    (("state", "resources", index, "node"), f"no node {r.node!r} in state.nodes")
                )
        return found


def parse_saved_state(text: str, source: str) -> SavedState:
    doc: Document = load_yaml(text, source)
    return validate(doc, SavedState, checks=SavedState.problems)
