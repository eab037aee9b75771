"""The operations layer: typed configuration edits and what-if changes (pure), and the live
cluster as the CLI sees it through them (`hastack simulate`, `hastack status` with nodes in
standby and maintenance)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conftest import ClusterFactory
from hastack.errors import HastackError
from hastack.model.config import (
    Clone,
    ClusterConfig,
    Group,
    Location,
    Primitive,
    Role,
    parse_cluster_config,
)
from hastack.model.scores import INFINITY
from hastack.model.state import ClusterState, NodeStatus, ResourceStatus
from hastack.ops import edits
from hastack.ops.configure import validated
from hastack.ops.edits import EditRefused
from hastack.ops.simulate import WhatIf, what_if
from helpers import hastack_cli, wait_until

BASE = parse_cluster_config(
    """\
nodes: [{node: n1}, {node: n2}]
resources:
  - group: web
    resources:
      - {primitive: ip, agent: "hastack:vip", params: {ip: 10.9.9.9}}
      - {primitive: app, agent: "hastack:service", params: {command: "sleep 9"}}
  - clone: cache-clone
    resource: {primitive: cache, agent: "ocf:heartbeat:Dummy"}
  - {primitive: solo, agent: "ocf:heartbeat:Dummy"}
constraints:
  - {colocation: app-with-cache, resource: web, with: cache-clone}
  - {order: cache-then-web, first: cache-clone, then: web}
  - {location: solo-on-n1, resource: solo, node: n1, score: 10}
""",
    "base.yaml",
)


def dummy(name: str) -> Primitive:
    return Primitive.model_validate({"primitive": name, "agent": "ocf:heartbeat:Dummy"})


def ids(config: ClusterConfig) -> list[str]:
    return [r.id for r in config.walk()]


# ---- pure edits ------------------------------------------------------------------------------


def test_create_alone_in_a_group_and_in_clones() -> None:
    alone = edits.create(dummy("d1"))(BASE)
    assert ids(alone.config)[-1] == "d1"
    assert alone.message == "created d1"
    grown = edits.create(dummy("d2"), group="web")(BASE)
    web = grown.config.find("web")
    assert isinstance(web, Group)
    assert [m.id for m in web.resources] == ["ip", "app", "d2"]
    assert grown.message == "created d2 at the end of group web"
    fresh = edits.create(dummy("d3"), group="new")(BASE)
    assert isinstance(fresh.config.find("new"), Group)
    cloned = edits.create(dummy("d4"), promotable=True)(BASE)
    clone = cloned.config.find("d4-clone")
    assert isinstance(clone, Clone)
    assert clone.promotable
    # the stored configuration itself is never modified
    assert "d1" not in ids(BASE)
    assert len(BASE.resources) == 3


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (edits.create(dummy("app")), "a resource named 'app' exists already"),
        (edits.create(dummy("x"), group="solo"), "solo is not a group"),
        (edits.create(dummy("x"), group="web", clone=True), "not both"),
        (edits.delete("nope"), "no resource 'nope' (resources: web, ip, app, cache-clone"),
        (edits.move("nope", "n1"), "no resource 'nope'"),
        (edits.set_target_role("nope", None), "no resource 'nope'"),
        (edits.clear("nope"), "no resource 'nope'"),
    ],
)
def test_refused_edits_name_the_problem(edit: edits.Edit, message: str) -> None:
    with pytest.raises(EditRefused, match=message.replace("(", r"\(")):
        edit(BASE)


def test_delete_takes_what_it_contains_and_the_constraints_naming_it() -> None:
    gone = edits.delete("web")(BASE)
    assert ids(gone.config) == ["cache-clone", "cache", "solo"]
    assert [c.order for c in gone.config.constraints if hasattr(c, "order")] == []
    assert gone.message == "deleted app, ip, web and 2 constraint(s) that named it"
    # the last member of a group takes its group with it; a clone's child its clone
    one = edits.delete("ip")(BASE).config
    emptied = edits.delete("app")(one)
    assert "web" not in ids(emptied.config)
    assert "emptied" not in emptied.message
    assert "web" in emptied.message
    child = edits.delete("cache")(BASE)
    assert "cache-clone" not in ids(child.config)
    assert not [c for c in child.config.constraints if "cache" in str(c)]


def test_enable_and_disable_set_target_role_anywhere_in_the_tree() -> None:
    off = edits.set_target_role("app", Role.STOPPED)(BASE).config
    app = off.find("app")
    assert app is not None
    assert app.meta.target_role is Role.STOPPED
    on = edits.set_target_role("app", None)(off).config
    assert on == BASE  # back to exactly what it was


def test_move_ban_clear_replace_their_own_constraints() -> None:
    moved = edits.move("solo", "n2")(BASE).config
    moved = edits.move("solo", "n3")(moved).config  # replaces, and knows n3 from now on
    prefer = [
        c for c in moved.constraints if isinstance(c, Location) and c.location.startswith("cli-")
    ]
    assert [(c.location, c.node, c.score) for c in prefer] == [("cli-prefer-solo", "n3", INFINITY)]
    assert "n3" in [n.node for n in moved.nodes]
    banned = edits.ban("solo", "n1")(moved).config
    names = sorted(c.location for c in banned.constraints if isinstance(c, Location))
    assert names == ["cli-ban-solo-on-n1", "cli-prefer-solo", "solo-on-n1"]
    cleared = edits.clear("solo")(banned)
    assert cleared.message == "cleared 2 move/ban constraint(s) of solo"
    assert [c.location for c in cleared.config.constraints if isinstance(c, Location)] == [
        "solo-on-n1"
    ]


def test_standby_and_maintenance_flags() -> None:
    standby = edits.set_node_flag("n2", "standby", True)(BASE).config
    assert [(n.node, n.standby) for n in standby.nodes] == [("n1", False), ("n2", True)]
    new_node = edits.set_node_flag("n7", "maintenance", True)(standby).config
    assert new_node.nodes[-1].node == "n7"
    assert new_node.nodes[-1].maintenance
    back = edits.set_node_flag("n2", "standby", False)(standby).config
    assert back == BASE
    with pytest.raises(EditRefused, match="unknown node flag"):
        edits.set_node_flag("n1", "asleep", True)


def test_an_edit_that_breaks_the_configuration_is_refused_whole() -> None:
    # A location naming a node the edit did not add stays checked by the whole-config check.
    broken = BASE.model_copy(
        update={
            "constraints": [
                *BASE.constraints,
                Location(location="l", resource="gone", node="n1", score=1),
            ]
        }
    )
    with pytest.raises(EditRefused, match="no resource named 'gone'"):
        validated(broken)
    assert validated(BASE) == BASE


# ---- what-if ---------------------------------------------------------------------------------

STATE = ClusterState(
    nodes={"n1": NodeStatus("n1"), "n2": NodeStatus("n2")},
    resources=(ResourceStatus("app", "n1"), ResourceStatus("cache:0", "n2")),
    now=100.0,
)


def test_what_if_changes_nodes_and_fails_what_runs() -> None:
    state = what_if(STATE, WhatIf(node_fail=["n2"], fail=[("cache", "n2")], quorum=False))
    assert state.nodes["n2"].unclean
    assert not state.nodes["n2"].online
    assert not state.has_quorum
    failed = [r for r in state.resources if r.failed]
    assert [(r.resource, r.fail_count, r.last_failure) for r in failed] == [("cache:0", 1, 100.0)]


def test_what_if_refuses_unknown_nodes_and_resources_not_running_there() -> None:
    with pytest.raises(HastackError, match=r"no node 'n9' in this cluster \(nodes: n1, n2\)"):
        what_if(STATE, WhatIf(node_down=["n9"]))
    with pytest.raises(HastackError, match=r"app is not running on n2 \(running there: cache:0\)"):
        what_if(STATE, WhatIf(fail=[("app", "n2")]))


# ---- the live cluster through the CLI ---------------------------------------------------------

LIVE = """\
properties: {stonith-enabled: false}
op-defaults: {timeout: 10s}
nodes: [{node: n1}, {node: n2}, {node: n3}]
resources:
  - primitive: app
    agent: hastack:service
    params: {command: "exec sleep 3600"}
    ops: [{name: monitor, interval: 2s}]
  - clone: cache-clone
    resource: {primitive: cache, agent: "ocf:heartbeat:Dummy"}
"""


def test_simulate_and_status_show_the_live_cluster(
    local_cluster: ClusterFactory, tmp_path: Path
) -> None:
    lc = local_cluster(3)
    path = tmp_path / "live.yaml"
    path.write_text(LIVE)
    assert hastack_cli(lc, "config", "apply", str(path), "--yes").returncode == 0

    def app_node() -> str | None:
        report = json.loads(hastack_cli(lc, "status", "--json").stdout)
        running = [r for r in report["resources"] if r["instance"] == "app"]
        caches = [r for r in report["resources"] if r["instance"].startswith("cache")]
        if len(running) == 1 and running[0]["role"] == "Started" and len(caches) == 3:
            return str(running[0]["node"])
        return None

    node = wait_until(app_node, 30, 0.3)
    # What the DC sees: nothing to do, everything started where it runs.
    plain = hastack_cli(lc, "simulate")
    assert plain.returncode == 0, plain.stderr
    assert f"app\t(hastack:service):\t Started {node}" in plain.stdout
    assert "Started: [ n1 n2 n3 ]" in plain.stdout
    transition = plain.stdout.split("Transition Summary:")[1].split("Revised")[0]
    assert "Start " not in transition
    assert "Recover" not in transition
    # A failure of what really runs there is a recovery, not "not running".
    failed = hastack_cli(lc, "simulate", "--fail", f"app:{node}")
    assert failed.returncode == 0, failed.stderr
    assert "Recover" in failed.stdout
    assert "app" in failed.stdout
    other = next(n for n in ("n1", "n2", "n3") if n != node)
    refused = hastack_cli(lc, "simulate", "--fail", f"app:{other}")
    assert refused.returncode == 1
    assert f"app is not running on {other}" in refused.stderr
    # Standby and maintenance are shown as pcs shows them, in text and JSON.
    assert hastack_cli(lc, "node", "standby", "n3").returncode == 0
    assert hastack_cli(lc, "node", "maintenance", "n2").returncode == 0

    def shown() -> str | None:
        text = hastack_cli(lc, "status").stdout
        return text if "Node n3: standby" in text and "Online: [ n1 ]" in text else None

    text = wait_until(shown, 20, 0.3)
    assert "Node n2: maintenance" in text
    nodes = {n["name"]: n for n in json.loads(hastack_cli(lc, "status", "--json").stdout)["nodes"]}
    assert nodes["n3"]["standby"]
    assert not nodes["n3"]["maintenance"]
    assert nodes["n2"]["maintenance"]
    assert not nodes["n1"]["standby"]


def test_status_says_what_is_pending_and_since_when() -> None:
    from hastack.model.members import ClusterSnapshot, MemberRecord, NodeKind
    from hastack.model.status import NodeReport, PendingOp
    from hastack.model.targets import NodeTarget
    from hastack.ops.status import _pending

    snap = ClusterSnapshot(
        revision=50,
        dc=None,
        members={n: MemberRecord(n, NodeKind.FULL, revision=1) for n in ("n1", "n2", "n3")},
        nodes={},
        other={},
        problems=(),
        statuses={
            "n1": NodeReport("n1", acked=10, working=20, pending={
                "app": PendingOp("start", since=1000.0, timeout=20.0)
            }),
            "n2": NodeReport("n2", acked=10, working=10),
        },
        targets={
            "n1": NodeTarget(5, 1, {"app": Role.STARTED}, at=999.0),
            "n2": NodeTarget(5, 1, {}, at=1001.0),
        },
        target_revisions={"n1": 20, "n2": 21},
    )  # fmt: skip
    assert _pending(snap, now=1003.0) == [
        f"start app on n1: running 3s of its 20s timeout (since {_when(1000.0)})",
        f"n2: has not taken its target yet (written {_when(1001.0)}, 2s ago)",
        "n3: has not reported since it joined",
    ]


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def test_status_counts_what_runs_only_from_reports_of_the_node_s_present_life() -> None:
    """A node restarted after a crash rejoins before it probes: until then its last report
    is the previous life's (what ran before the crash), not what runs now."""
    from hastack.model.members import ClusterSnapshot, MemberRecord, NodeKind
    from hastack.model.status import NodeReport, ResourceReport
    from hastack.ops.status import _resources

    running = {"solo": ResourceReport(Role.STARTED)}
    snap = ClusterSnapshot(
        revision=50,
        dc=None,
        members={n: MemberRecord(n, NodeKind.FULL, joined_at=100.0) for n in ("n1", "n2")},
        nodes={},
        other={},
        problems=(),
        config=BASE,
        statuses={
            "n1": NodeReport("n1", updated=99.0, resources=running),  # before its new life
            "n2": NodeReport("n2", updated=101.0, resources=running),
        },
    )
    _, resources, _, _ = _resources(snap)
    assert {r["node"]: r["node-online"] for r in resources} == {"n1": False, "n2": True}
