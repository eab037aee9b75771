"""The executor's pure decisions (hastack.executor.transitions): what a result makes of an
instance's report, the next step toward the target, the OCF request of an operation, and when
monitors run. No agents, no loop, no clock: `now` is a number.

The table of every operation × result is a golden file, tests/golden/executor/transitions.txt;
`UPDATE_GOLDEN=1` rewrites it from the code (then read the diff: it is the behaviour change).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from hastack.executor.transitions import (
    Host,
    MonitorSchedule,
    Placement,
    after_cleanup,
    after_monitor,
    after_notify,
    after_operation,
    after_probe,
    cleanup_covers,
    exclusive_name,
    exclusive_promoted,
    is_worth_reporting,
    local_steps,
    monitors_for,
    next_step,
    op_request,
    op_timeout,
    placements,
    probe_names,
    rule_attributes,
    unprobed,
)
from hastack.model.config import ClusterConfig, Discovery, OnFail, Role, parse_cluster_config
from hastack.model.members import NodeKind
from hastack.model.ocf import OcfRc
from hastack.model.operations import AgentMetadata, OpRequest, OpResult
from hastack.model.scores import INFINITY
from hastack.model.status import LastOp, ResourceReport
from hastack.model.targets import NodeTarget

GOLDEN = Path(__file__).parent / "golden" / "executor" / "transitions.txt"
DISCOVERY = Path(__file__).parent / "golden" / "executor" / "discovery.yaml"
NOW = 100.0

# ---- the golden table -------------------------------------------------------------------

RESULTS = [
    *[(rc.name.lower(), OpResult(rc, "" if rc == OcfRc.SUCCESS else "why", 0.5)) for rc in OcfRc],
    ("timeout", OpResult(OcfRc.ERR_GENERIC, "timed out after 20s (killed)", 20.0, True)),
    ("unknown 42", OpResult(42, "why", 0.5)),
]

STARTED_AT = LastOp("start", 0, "", 50.0, 0.2)
PROMOTED_AT = LastOp("promote", 0, "", 60.0, 0.2)
FRESH = ResourceReport()
STARTED = ResourceReport(Role.STARTED, last_op=STARTED_AT)
UNPROMOTED = ResourceReport(Role.UNPROMOTED, last_op=STARTED_AT)
PROMOTED = ResourceReport(Role.PROMOTED, last_op=PROMOTED_AT)

HEADER = """\
# What one result makes of an instance's report: hastack.executor.transitions, computed by
# tests/test_executor_transitions.py (UPDATE_GOLDEN=1 rewrites this file; review the diff).
#
# Each section is an operation and the report before it; each line a result (an OCF exit
# code, a timeout, an exit code no standard knows) and the report after it. Operations are
# recorded at 100; "failed-op=last-op" means the failed operation is the one just recorded.
"""


def op_text(o: LastOp) -> str:
    reason = f' "{o.reason}"' if o.reason else ""
    every = f" every {o.interval:g}s" if o.interval else ""
    return f"{o.op}:{o.rc}{reason} at {o.at:g}{every}"


def render(r: ResourceReport) -> str:
    parts = [r.role.value]
    if r.failed:
        parts.append("failed")
    if r.blocked:
        parts.append("blocked")
    if r.fail_count:
        count = "INFINITY" if r.fail_count >= INFINITY else str(r.fail_count)
        parts.append(f"fail-count={count}")
    if r.last_failure is not None:
        parts.append(f"last-failure={r.last_failure:g}")
    if r.last_op is not None:
        parts.append(f"last-op=({op_text(r.last_op)})")
    if r.failed_op is not None:
        same = r.failed_op == r.last_op
        parts.append("failed-op=last-op" if same else f"failed-op=({op_text(r.failed_op)})")
    return " ".join(parts)


def table() -> str:
    lines: list[str] = []

    def section(title: str, after: Callable[[OpResult], ResourceReport | None]) -> None:
        lines.append(f"## {title}")
        for label, result in RESULTS:
            new = after(result)
            shown = "unchanged, monitoring goes on" if new is None else render(new)
            lines.append(f"{label:<24} -> {shown}")

    for promotable in (False, True):
        for fatal in (True, False):
            flag = " promotable" if promotable else ""
            section(
                f"start from {render(FRESH)}{flag} "
                f"start-failure-is-fatal={'yes' if fatal else 'no'}",
                lambda r, p=promotable, f=fatal: after_operation(
                    FRESH, "start", r, now=NOW, promotable=p, start_failure_is_fatal=f
                ),
            )
    for before, flag in ((STARTED, ""), (UNPROMOTED, " promotable")):
        section(
            f"stop from {render(before)}{flag}",
            lambda r, b=before: after_operation(b, "stop", r, now=NOW, promotable=b is UNPROMOTED),
        )
    section(
        f"promote from {render(UNPROMOTED)} promotable",
        lambda r: after_operation(UNPROMOTED, "promote", r, now=NOW, promotable=True),
    )
    demoting = replace(PROMOTED, fail_count=1)
    section(
        f"demote from {render(demoting)} promotable",
        lambda r: after_operation(demoting, "demote", r, now=NOW, promotable=True),
    )
    for promotable in (False, True):
        section(
            f"probe from {render(FRESH)}{' promotable' if promotable else ''}",
            lambda r, p=promotable: after_probe(FRESH, r, now=NOW, promotable=p),
        )
    monitored = [
        (STARTED, "", None),
        (replace(UNPROMOTED, fail_count=2), " promotable", None),
        (PROMOTED, " promotable", None),
        (STARTED, "", OnFail.IGNORE),
    ]
    for before, flag, on_fail in monitored:
        how = "interval 10s" + (", on-fail ignore" if on_fail else "")
        section(
            f"monitor ({how}) from {render(before)}{flag}",
            lambda r, b=before, o=on_fail: after_monitor(b, r, now=NOW, interval=10.0, on_fail=o),
        )
    return HEADER + "\n".join(lines) + "\n"


def test_every_operation_and_result_as_the_golden_table_says() -> None:
    got = table()
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(got)
    assert got == GOLDEN.read_text()


# ---- the rules the table shows, one by one --------------------------------------------------

FAIL = OpResult(OcfRc.ERR_GENERIC, "boom", 0.1)
OK = OpResult(OcfRc.SUCCESS, "", 0.1)


def test_a_failed_start_bans_the_node_only_with_start_failure_is_fatal() -> None:
    fatal = after_operation(FRESH, "start", FAIL, now=NOW, start_failure_is_fatal=True)
    assert (fatal.failed, fatal.fail_count) == (True, INFINITY)
    counted = replace(FRESH, fail_count=2)
    soft = after_operation(counted, "start", FAIL, now=NOW, start_failure_is_fatal=False)
    assert (soft.failed, soft.fail_count) == (True, 3)
    # Either way it counts as active: whatever the start left behind must be stopped.
    assert fatal.role is soft.role is Role.STARTED
    assert soft.failed_op == soft.last_op == LastOp("start", 1, "boom", NOW, 0.1)


def test_a_start_that_succeeds_clears_a_failure_but_not_the_count() -> None:
    before = replace(STARTED, failed=True, fail_count=1, role=Role.STOPPED)
    after = after_operation(before, "start", OK, now=NOW, promotable=True)
    assert (after.role, after.failed, after.fail_count) == (Role.UNPROMOTED, False, 1)


def test_a_failed_stop_blocks_and_bans() -> None:
    after = after_operation(UNPROMOTED, "stop", FAIL, now=NOW, promotable=True)
    assert after.blocked
    assert after.failed
    assert after.fail_count == INFINITY
    assert after.role is Role.UNPROMOTED  # it may still run
    target = NodeTarget(1, 0, {})
    assert local_steps(target, {"db:0": after}) == [], "nothing touches a blocked instance"


def test_fail_counts_stop_at_infinity() -> None:
    banned = replace(STARTED, fail_count=INFINITY)
    after = after_monitor(banned, FAIL, now=NOW, interval=5.0)
    assert after is not None
    assert after.fail_count == INFINITY


@pytest.mark.parametrize("rc", [OcfRc.ERR_INSTALLED, OcfRc.ERR_CONFIGURED, OcfRc.ERR_ARGS])
def test_a_probe_that_says_it_cannot_run_here_bans_without_a_stop(rc: OcfRc) -> None:
    after = after_probe(FRESH, OpResult(rc, "no binary"), now=NOW)
    assert after.role is Role.STOPPED
    assert after.fail_count == INFINITY
    assert not after.failed, "nothing runs, so there is nothing to recover"
    assert after.failed_op == LastOp("probe", rc, "no binary", NOW)


@pytest.mark.parametrize(
    ("rc", "role", "failed"),
    [
        (OcfRc.SUCCESS, Role.UNPROMOTED, False),
        (OcfRc.RUNNING_PROMOTED, Role.PROMOTED, False),
        (OcfRc.FAILED_PROMOTED, Role.PROMOTED, True),
        (OcfRc.NOT_RUNNING, Role.STOPPED, False),
        (OcfRc.ERR_GENERIC, Role.STARTED, True),
    ],
)
def test_probes_of_a_promotable_clone(rc: OcfRc, role: Role, failed: bool) -> None:
    after = after_probe(FRESH, OpResult(rc), now=NOW, promotable=True)
    assert (after.role, after.failed) == (role, failed)


def test_a_probe_that_finds_nothing_says_nothing() -> None:
    before = replace(FRESH, last_op=STARTED_AT)
    after = after_probe(before, OpResult(OcfRc.NOT_RUNNING, "not running"), now=NOW)
    assert after == FRESH
    assert not is_worth_reporting(after)


def test_a_monitor_failure_is_counted_and_explained() -> None:
    after = after_monitor(STARTED, OpResult(OcfRc.NOT_RUNNING), now=NOW, interval=5.0)
    assert after is not None
    assert (after.role, after.failed, after.fail_count) == (Role.STARTED, True, 1)
    # With no reason from the agent, the exit code explains it.
    assert after.last_op == LastOp("monitor", 7, "not running", NOW, 0.0, 5.0)


@pytest.mark.parametrize("on_fail", list(OnFail))
def test_only_on_fail_ignore_hides_a_monitor_failure(on_fail: OnFail) -> None:
    after = after_monitor(STARTED, FAIL, now=NOW, interval=5.0, on_fail=on_fail)
    assert (after is None) == (on_fail is OnFail.IGNORE)


def test_a_promoted_instance_that_answers_success_has_lost_its_role() -> None:
    assert after_monitor(PROMOTED, OpResult(OcfRc.RUNNING_PROMOTED), now=NOW, interval=5) is None
    demoted = after_monitor(PROMOTED, OK, now=NOW, interval=5.0)
    assert demoted is not None
    assert demoted.failed


def test_a_failed_notification_is_the_last_op_and_nothing_more() -> None:
    assert after_notify(STARTED, OK, now=NOW) is STARTED
    after = after_notify(STARTED, FAIL, now=NOW)
    assert after == replace(STARTED, last_op=LastOp("notify", 1, "boom", NOW, 0.1))


def test_cleanup_forgets_failures_and_keeps_the_role() -> None:
    failed = after_operation(STARTED, "stop", FAIL, now=NOW)
    clean = after_cleanup(failed)
    assert clean == ResourceReport(Role.STARTED, last_op=failed.last_op)


def test_what_is_worth_reporting() -> None:
    assert not is_worth_reporting(FRESH)
    assert is_worth_reporting(replace(FRESH, fail_count=1))
    assert is_worth_reporting(replace(FRESH, failed=True))
    assert is_worth_reporting(replace(FRESH, last_op=STARTED_AT))
    assert is_worth_reporting(ResourceReport(Role.UNPROMOTED))


# ---- toward the target -------------------------------------------------------------------

ABSENT = None
# (current role, desired role) -> the next step; ABSENT: not known here / not in the target.
STEPS = {
    (ABSENT, ABSENT): None,
    (ABSENT, Role.STOPPED): None,
    (ABSENT, Role.STARTED): "start",
    (ABSENT, Role.UNPROMOTED): "start",
    (ABSENT, Role.PROMOTED): "start",
    (Role.STOPPED, ABSENT): None,
    (Role.STOPPED, Role.STOPPED): None,
    (Role.STOPPED, Role.STARTED): "start",
    (Role.STOPPED, Role.UNPROMOTED): "start",
    (Role.STOPPED, Role.PROMOTED): "start",
    (Role.STARTED, ABSENT): "stop",
    (Role.STARTED, Role.STOPPED): "stop",
    (Role.STARTED, Role.STARTED): None,
    (Role.STARTED, Role.UNPROMOTED): None,
    (Role.STARTED, Role.PROMOTED): "promote",
    (Role.UNPROMOTED, ABSENT): "stop",
    (Role.UNPROMOTED, Role.STOPPED): "stop",
    (Role.UNPROMOTED, Role.STARTED): None,
    (Role.UNPROMOTED, Role.UNPROMOTED): None,
    (Role.UNPROMOTED, Role.PROMOTED): "promote",
    (Role.PROMOTED, ABSENT): "demote",
    (Role.PROMOTED, Role.STOPPED): "demote",
    (Role.PROMOTED, Role.STARTED): "demote",
    (Role.PROMOTED, Role.UNPROMOTED): "demote",
    (Role.PROMOTED, Role.PROMOTED): None,
}


def target_for(desired: Role | None, **kwargs: object) -> NodeTarget:
    return NodeTarget(1, 0, {"r": desired} if desired is not None else {}, **kwargs)  # type: ignore[arg-type]


def reports_for(current: Role | None, **kwargs: object) -> dict[str, ResourceReport]:
    return {"r": ResourceReport(current, **kwargs)} if current is not None else {}  # type: ignore[arg-type]


@pytest.mark.parametrize(("current", "desired"), list(STEPS), ids=str)
def test_the_next_step_for_every_pair_of_roles(current: Role | None, desired: Role | None) -> None:
    expected = STEPS[(current, desired)]
    steps = local_steps(target_for(desired), reports_for(current))
    assert steps == ([("r", expected)] if expected else [])


@pytest.mark.parametrize(("current", "desired"), list(STEPS), ids=str)
def test_busy_blocked_and_unmanaged_instances_get_no_step(
    current: Role | None, desired: Role | None
) -> None:
    unmanaged = target_for(desired, unmanaged=frozenset({"r"}))
    assert local_steps(unmanaged, reports_for(current)) == []
    if current is not None:
        assert local_steps(target_for(desired), reports_for(current), busy={"r"}) == []
        assert local_steps(target_for(desired), reports_for(current, blocked=True)) == []


@pytest.mark.parametrize(("current", "desired"), list(STEPS), ids=str)
def test_successful_steps_reach_the_target(current: Role | None, desired: Role | None) -> None:
    promotable = Role.PROMOTED in (current, desired) or Role.UNPROMOTED in (current, desired)
    reports = reports_for(current)
    target = target_for(desired)
    for _ in range(3):
        steps = local_steps(target, reports)
        if not steps:
            break
        ((name, op),) = steps
        before = reports.get(name, ResourceReport())
        reports[name] = after_operation(before, op, OK, now=NOW, promotable=promotable)
    assert local_steps(target, reports) == []
    reached = reports["r"].role if "r" in reports else Role.STOPPED
    wanted = desired or Role.STOPPED
    assert reached == wanted or {reached, wanted} == {Role.STARTED, Role.UNPROMOTED}


def test_steps_come_in_name_order_for_every_instance_at_once() -> None:
    target = NodeTarget(1, 0, {"b": Role.STARTED, "a": Role.PROMOTED, "c": Role.STARTED})
    known = {"c": ResourceReport(Role.STARTED), "z": ResourceReport(Role.STARTED)}
    assert local_steps(target, known) == [("a", "start"), ("b", "start"), ("z", "stop")]


def test_next_step_is_the_table_without_absence() -> None:
    for (current, desired), op in STEPS.items():
        if current is not None and desired is not None:
            assert next_step(current, desired) == op


# ---- the OCF request ----------------------------------------------------------------------

CONFIG = parse_cluster_config(
    """\
op-defaults: {timeout: 30s}
nodes: [{node: n1}, {node: n2}, {node: n3}]
resources:
  - primitive: plain
    agent: ocf:heartbeat:Dummy
    params: {state: /run/plain}
    ops:
      - {name: start, timeout: 7s}
      - {name: monitor, interval: 10s, timeout: 4s}
      - {name: monitor, interval: 0s, timeout: 3s}
      - {name: stop}
  - clone: anon
    meta: {notify: true}
    resource: {primitive: a, agent: ocf:heartbeat:Dummy}
  - clone: db
    promotable: true
    meta: {promoted-max: 1, clone-max: 2}
    resource: {primitive: d, agent: ocf:pacemaker:Stateful}
  - clone: uniq
    meta: {globally-unique: true, clone-max: 4, clone-node-max: 2}
    resource: {primitive: u, agent: ocf:heartbeat:Dummy}
""",
    "test.yaml",
)
PLACES = placements(CONFIG)
HOST = Host("n2", "ns-n2", "/var/lib/hastack/n2", {"node": "n2", "name": "c1"})
META = AgentMetadata("Dummy", timeouts={"start": 20.0, "stop": 15.0, "monitor": 12.0})


def request(name: str, op: str, **kwargs: object) -> OpRequest:
    primitive = name.partition(":")[0]
    made = op_request(
        name,
        PLACES[primitive],
        op,
        config=CONFIG,
        metadata=kwargs.pop("metadata", META),  # type: ignore[arg-type]
        host=HOST,
        **kwargs,  # type: ignore[arg-type]
    )
    assert isinstance(made, OpRequest), made
    return made


@pytest.mark.parametrize(
    ("op", "interval", "timeout", "why"),
    [
        ("start", 0.0, 7.0, "the op's own timeout beats the agent's"),
        ("monitor", 10.0, 4.0, "an op is found by name and interval"),
        ("probe", 0.0, 3.0, "a probe is the monitor with interval 0"),
        ("monitor", 30.0, 12.0, "no op with that interval: the agent's metadata"),
        ("stop", 0.0, 15.0, "an op without a timeout: the agent's metadata"),
        ("promote", 0.0, 30.0, "neither: op-defaults"),
    ],
)
def test_timeout_precedence(op: str, interval: float, timeout: float, why: str) -> None:
    got = request("plain", op, interval=interval)
    assert got.timeout == timeout, why
    assert got.meta["timeout"] == str(int(timeout * 1000))
    assert got.meta["interval"] == str(int(interval * 1000))


def test_without_metadata_op_defaults_fill_in() -> None:
    p = PLACES["plain"].primitive
    assert op_timeout(p, "stop", 0.0, None, CONFIG) == 30.0
    assert op_timeout(p, "start", 0.0, None, CONFIG) == 7.0


def test_a_probe_without_its_own_op_takes_the_agents_monitor_timeout() -> None:
    assert request("a", "probe").timeout == META.timeouts["monitor"]


def test_a_primitive_request() -> None:
    got = request("plain", "probe")
    assert got == OpRequest(
        instance="plain",
        primitive="plain",
        op="monitor",
        params={"state": "/run/plain"},
        meta={"timeout": "3000", "interval": "0", "name": "monitor", "on_node": "n2"},
        timeout=3.0,
        interval=0.0,
        netns="ns-n2",
        state_dir="/var/lib/hastack/n2",
        cluster={"node": "n2", "name": "c1"},
        nice=10,  # resource-nice: agents run below the agent's own priority
    )


def test_an_anonymous_clone_instance_is_named_by_its_primitive() -> None:
    got = request("a:2", "start")
    assert got.instance == "a"
    assert got.primitive == "a"
    assert got.meta == {
        "timeout": "20000",
        "interval": "0",
        "name": "start",
        "on_node": "n2",
        "clone": "2",
        "clone_max": "3",  # one per configured node
        "clone_node_max": "1",
        "globally_unique": "false",
        "notify": "true",
    }
    # As probed (under the primitive's own name) it is instance 0.
    assert request("a", "probe").meta["clone"] == "0"


def test_a_promotable_clone_carries_its_promotion_limits() -> None:
    got = request("d:1", "promote")
    assert got.instance == "d"
    assert {
        k: got.meta[k] for k in ("clone", "clone_max", "promoted_max", "promoted_node_max")
    } == {
        "clone": "1",
        "clone_max": "2",
        "promoted_max": "1",
        "promoted_node_max": "1",
    }
    assert got.meta["notify"] == "false"
    assert "promoted_max" not in request("a:0", "start").meta


def test_a_globally_unique_clone_instance_keeps_its_number() -> None:
    got = request("u:3", "stop")
    assert got.instance == "u:3"
    assert (got.meta["clone"], got.meta["clone_max"], got.meta["clone_node_max"]) == ("3", "4", "2")
    assert got.meta["globally_unique"] == "true"


def test_notify_variables_join_the_meta() -> None:
    variables = {"notify_type": "pre", "notify_operation": "stop", "notify_stop_uname": "n3"}
    got = request("a:0", "notify", extra=variables)
    assert got.op == "notify"
    assert got.meta["name"] == "notify"
    assert {k: got.meta[k] for k in variables} == variables
    assert got.meta["notify"] == "true"


def test_a_start_missing_a_required_parameter_never_reaches_the_agent() -> None:
    needs = AgentMetadata("Dummy", required=frozenset({"state", "fake", "bind"}))
    refused = op_request(
        "plain", PLACES["plain"], "start", config=CONFIG, metadata=needs, host=HOST
    )
    assert refused == OpResult(OcfRc.ERR_CONFIGURED, "required parameter(s) missing: bind, fake")
    # Only a start is refused: stopping or probing something misconfigured must still work.
    assert isinstance(request("plain", "stop", metadata=needs), OpRequest)
    assert isinstance(request("plain", "probe", metadata=needs), OpRequest)


def config_with(text: str) -> ClusterConfig:
    return parse_cluster_config(text, "test.yaml")


def test_the_clone_number_is_below_clone_max() -> None:
    config = config_with(
        "resources:\n  - clone: c\n    resource: {primitive: p, agent: ocf:heartbeat:Dummy}\n"
    )
    # The agent tells the executor how many nodes the cluster knows, as the scheduler counts.
    host = replace(HOST, known_nodes=3)
    made = op_request(
        "p:2", placements(config)["p"], "start", config=config, metadata=None, host=host
    )
    assert isinstance(made, OpRequest)
    assert int(made.meta["clone"]) < int(made.meta["clone_max"])


def test_a_clone_with_several_instances_per_node_is_globally_unique() -> None:
    config = config_with(
        "resources:\n  - clone: c\n    meta: {clone-node-max: 2}\n"
        "    resource: {primitive: p, agent: ocf:heartbeat:Dummy}\n"
    )
    place = placements(config)["p"]
    names = set()
    for name in ("p:0", "p:1"):
        made = op_request(name, place, "start", config=config, metadata=None, host=HOST)
        assert isinstance(made, OpRequest)
        names.add(made.instance)
    assert names == {"p:0", "p:1"}


# ---- OCF 1.1 degraded states ------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "rc"),
    [(STARTED, OcfRc.DEGRADED), (PROMOTED, OcfRc.DEGRADED_PROMOTED)],
    ids=["degraded", "degraded-promoted"],
)
def test_a_degraded_monitor_is_not_a_failure(before: ResourceReport, rc: OcfRc) -> None:
    assert after_monitor(before, OpResult(rc, "slow disk"), now=NOW, interval=5.0) is None


@pytest.mark.parametrize(
    ("rc", "role"),
    [(OcfRc.DEGRADED, Role.UNPROMOTED), (OcfRc.DEGRADED_PROMOTED, Role.PROMOTED)],
    ids=["degraded", "degraded-promoted"],
)
def test_a_degraded_probe_adopts_a_running_instance(rc: OcfRc, role: Role) -> None:
    after = after_probe(FRESH, OpResult(rc, "slow disk"), now=NOW, promotable=True)
    assert (after.role, after.failed) == (role, False)


# ---- probes, monitors, exclusivity, cleanup ----------------------------------------------


def _discovery_cases() -> list[Any]:
    cases = yaml.safe_load(DISCOVERY.read_text())["cases"]
    return [
        pytest.param(case, id=f"{index + 1}-{case['description'].split()[0].lower()}")
        for index, case in enumerate(cases)
    ]


@pytest.mark.parametrize("case", _discovery_cases())
def test_what_each_node_leaves_unprobed(case: dict[str, Any]) -> None:
    """tests/golden/executor/discovery.yaml: resource-discovery, node by node."""
    config = ClusterConfig.model_validate(case["config"])
    assert config.reference_problems() == []
    for node, expect in case["nodes"].items():
        attributes = rule_attributes(config, node, NodeKind.FULL, expect.get("reported", {}))
        got = {p: why.value for p, why in sorted(unprobed(config, node, attributes).items())}
        assert got == expect["unprobed"], f"{node}: {case['description']}"


def test_a_configuration_without_discovery_leaves_everything_probed() -> None:
    assert unprobed(CONFIG, "n1", rule_attributes(CONFIG, "n1", NodeKind.FULL, {})) == {}


def test_rule_attributes_are_the_schedulers() -> None:
    config = config_with(
        """nodes: [{node: n1, attributes: {rack: r1, zone: a}}]
resources: []
"""
    )
    attributes = rule_attributes(config, "n1", NodeKind.REMOTE, {"zone": "b", "#kind": "x"})
    assert attributes == {"#uname": "n1", "rack": "r1", "zone": "b", "#kind": "remote"}
    assert unprobed(config, "n1", attributes) == {}
    assert Discovery.EXCLUSIVE.strength > Discovery.NEVER.strength > Discovery.ALWAYS.strength


def test_probe_names() -> None:
    assert probe_names(PLACES["plain"], CONFIG) == ["plain"]
    assert probe_names(PLACES["a"], CONFIG) == ["a"], "anonymous: found under its primitive"
    assert probe_names(PLACES["d"], CONFIG) == ["d"]
    assert probe_names(PLACES["u"], CONFIG) == ["u:0", "u:1", "u:2", "u:3"]


MONITORED = placements(
    parse_cluster_config(
        """\
resources:
  - clone: db
    promotable: true
    resource:
      primitive: d
      agent: ocf:pacemaker:Stateful
      ops:
        - {name: monitor, interval: 10s}
        - {name: monitor, interval: 11s, role: Unpromoted}
        - {name: monitor, interval: 9s, role: Promoted}
        - {name: monitor, interval: 0s}
        - {name: monitor, interval: 20s, enabled: false}
        - {name: start, interval: 0s}
""",
        "test.yaml",
    )
)["d"].primitive


@pytest.mark.parametrize(
    ("role", "intervals"),
    [
        (Role.STOPPED, []),
        (Role.STARTED, [10.0, 11.0]),
        (Role.UNPROMOTED, [10.0, 11.0]),
        (Role.PROMOTED, [9.0]),  # its own monitor replaces the role-less one
    ],
)
def test_monitors_for_each_role(role: Role, intervals: list[float]) -> None:
    assert [op.interval for op in monitors_for(MONITORED, role)] == intervals


def test_a_promoted_instance_without_its_own_monitor_keeps_the_role_less_one() -> None:
    p = PLACES["plain"].primitive
    assert [op.interval for op in monitors_for(p, Role.PROMOTED)] == [10.0]


def turns(schedule: MonitorSchedule, wake_ups: list[float]) -> list[tuple[int, float]]:
    """Drive a schedule on a fake clock: at each wake-up the monitor due first takes its turn
    (as the loop does: it sleeps until then, or wakes up late)."""
    out = []
    for late in wake_ups:
        index, due = schedule.next()
        now = max(due, late)
        out.append((index, now))
        schedule = schedule.ran(index, now)
    return out


def test_monitors_take_their_turns_by_interval() -> None:
    schedule = MonitorSchedule.starting([2.0, 3.0], now=10.0)
    assert turns(schedule, [0.0] * 6) == [
        (0, 12.0),
        (1, 13.0),
        (0, 14.0),
        (0, 16.0),  # the first listed wins a tie
        (1, 16.0),
        (0, 18.0),
    ]


def test_a_late_turn_delays_that_monitor_without_a_burst() -> None:
    schedule = MonitorSchedule.starting([1.0], now=0.0)
    # The loop woke up 5 s late (a long operation, a busy machine): one turn, then the
    # interval again from there, not five turns in a row to catch up.
    assert turns(schedule, [6.0, 0.0, 0.0]) == [(0, 6.0), (0, 7.0), (0, 8.0)]


def test_exclusive_names() -> None:
    assert exclusive_name("plain", PLACES["plain"]) == "plain"
    assert exclusive_name("gone", None) == "gone", "an orphan: assume the worst"
    assert exclusive_name("a", PLACES["a"]) is None
    assert exclusive_promoted(PLACES["d"]) == "db[Promoted]"
    assert exclusive_promoted(PLACES["plain"]) is None
    assert exclusive_promoted(PLACES["a"]) is None
    two = config_with(
        "resources:\n  - clone: db\n    promotable: true\n    meta: {promoted-max: 2}\n"
        "    resource: {primitive: d, agent: ocf:pacemaker:Stateful}\n"
    )
    assert exclusive_promoted(placements(two)["d"]) is None


@pytest.mark.parametrize(
    ("resource", "name", "primitive", "covered"),
    [
        ("plain", "plain", "plain", True),
        ("a", "a:1", "a", True),
        ("a:1", "a:1", "a", True),
        ("anon", "a:1", "a", True),
        ("a:0", "a:1", "a", False),
        ("db", "a:1", "a", False),
    ],
)
def test_what_a_cleanup_covers(resource: str, name: str, primitive: str, covered: bool) -> None:
    assert cleanup_covers(resource, name, primitive, PLACES.get(primitive)) is covered


def test_placements_see_through_groups_and_clones() -> None:
    config = config_with(
        """\
resources:
  - group: g
    resources:
      - {primitive: g1, agent: ocf:heartbeat:Dummy}
      - {primitive: g2, agent: ocf:heartbeat:Dummy}
  - clone: cg
    promotable: true
    resource:
      group: inner
      resources: [{primitive: i1, agent: ocf:heartbeat:Dummy}]
"""
    )
    got = placements(config)
    assert sorted(got) == ["g1", "g2", "i1"]
    assert got["g1"].clone is None
    assert got["i1"].promotable
    assert got["i1"].anonymous_clone
    assert isinstance(got["i1"], Placement)
