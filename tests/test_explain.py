"""Why a resource does not run (pure): each reason the configuration and the state give, and
the scheduler's own reason when a start is already planned."""

from __future__ import annotations

from hastack.model.config import Role, parse_cluster_config
from hastack.model.state import ClusterState, NodeStatus, ResourceStatus
from hastack.scheduler import schedule
from hastack.scheduler.explain import why_stopped

CONFIG = """\
properties: {stonith-enabled: false}
resource-defaults: {migration-threshold: 2}
nodes: [{node: n1}, {node: n2, standby: true}, {node: n3}]
resources:
  - {primitive: disabled, agent: "ocf:heartbeat:Dummy", meta: {target-role: Stopped}}
  - group: g
    meta: {is-managed: false}
    resources: [{primitive: inner, agent: "ocf:heartbeat:Dummy"}]
  - {primitive: flaky, agent: "ocf:heartbeat:Dummy"}
  - {primitive: follower, agent: "ocf:heartbeat:Dummy"}
  - {primitive: free, agent: "ocf:heartbeat:Dummy"}
constraints:
  - {location: no-flaky, resource: flaky, node: n3, score: -INFINITY}
  - {colocation: follow-disabled, resource: follower, with: disabled}
"""


def explain(text: str, state: ClusterState) -> dict[str, list[str]]:
    config = parse_cluster_config(text, "t.yaml")
    return why_stopped(config, state, schedule(config, state))


def test_each_reason_is_named() -> None:
    state = ClusterState(
        nodes={
            "n1": NodeStatus("n1"),
            "n2": NodeStatus("n2"),
            "n3": NodeStatus("n3", online=False),
        },
        resources=(ResourceStatus("flaky", "n1", role=Role.STOPPED, failed=True, fail_count=2),),
        now=10.0,
    )
    why = explain(CONFIG, state)
    assert why["disabled"] == ["disabled: target-role=Stopped on disabled"]
    assert why["inner"] == ["unmanaged: is-managed=false on g"]
    assert why["flaky"] == [
        "nowhere to run: n1: failed 2 time(s), migration-threshold 2; n2: standby; "
        "n3: offline, banned by no-flaky"
    ]
    assert why["follower"] == ["must run with disabled (follow-disabled), which runs nowhere"]
    assert why["free"][0].startswith("starting on n1: ")


def test_no_fencing_device_with_stonith_enabled_stops_everything() -> None:
    text = CONFIG.replace("properties: {stonith-enabled: false}\n", "")
    state = ClusterState(nodes={"n1": NodeStatus("n1")}, now=1.0)
    why = explain(text, state)
    assert any("no fencing device is configured" in r for r in why["free"])


def test_what_runs_is_not_listed() -> None:
    state = ClusterState(
        nodes={"n1": NodeStatus("n1")}, resources=(ResourceStatus("free", "n1"),), now=1.0
    )
    assert "free" not in explain(CONFIG, state)
