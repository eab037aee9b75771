"""hastack:ping (docs/connectivity.md): targets and parameters, the score, dampening, the
DC's connectivity events — pure; then the probe and the agent on loopback."""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from hastack.executor.agents import NATIVE
from hastack.executor.agents.ping import PingAgent, probe
from hastack.executor.check import agent_problems
from hastack.model.config import parse_cluster_config
from hastack.model.connectivity import (
    Dampener,
    Target,
    connectivity_events,
    lost_everywhere,
    parse_targets,
    ping_settings,
    score,
)
from hastack.model.document import format_path
from hastack.model.operations import OpRequest
from hastack.nsthread import call_in_netns
from hastack.scheduler.rules import rule_score

# ---- targets and parameters ------------------------------------------------------------------


def test_targets_are_addresses_with_an_optional_interface_or_port() -> None:
    got = parse_targets("10.0.0.1, 10.1.0.1@eth1 10.0.0.2:22 [fd00::1]:443 fd00::2@eth0")
    assert [str(t) for t in got] == [
        "10.0.0.1", "10.1.0.1@eth1", "10.0.0.2:22", "[fd00::1]:443", "fd00::2@eth0",
    ]  # fmt: skip
    assert (got[1].interface, got[2].port, got[3].port) == ("eth1", 22, 443)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "no targets"),
        ("gateway.example", "is not an address"),
        ("10.0.0.300", "is not an address"),
        ("10.0.0.1:0", "is not 1..65535"),
        ("10.0.0.1:http", "is not 1..65535"),
        ("10.0.0.1@", "an interface name"),
        ("[fd00::1]443", "[ADDRESS]:PORT"),
        ("10.0.0.1 10.0.0.1", "listed twice"),
    ],
)
def test_bad_targets_are_refused_with_the_reason(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why.replace("[", r"\[").replace("]", r"\]")):
        parse_targets(text)


def test_settings_defaults_and_bad_values() -> None:
    s = ping_settings({"targets": "10.0.0.1"})
    assert (s.name, s.multiplier, s.interval, s.dampen, s.attempts) == ("pingd", 1000, 1, 5, 2)
    s = ping_settings({"targets": "10.0.0.1", "dampen": "0", "interval": "500ms"})
    assert (s.dampen, s.interval) == (0.0, 0.5)
    for params, where in [
        ({"targets": "10.0.0.1", "interval": "0s"}, "interval"),
        ({"targets": "10.0.0.1", "dampen": "soon"}, "dampen"),
        ({"targets": "10.0.0.1", "multiplier": "-5"}, "multiplier"),
        ({"targets": "nowhere"}, "targets"),
    ]:
        with pytest.raises(ValueError, match=f"^{where}: "):
            ping_settings(params)


CONFIG = """\
resources:
  - primitive: vip
    agent: hastack:vip
    params: {ip: 10.0.0.100}
  - clone: ping-clone
    resource:
      primitive: ping
      agent: hastack:ping
      params: {targets: "10.0.0.1 10.0.0.300", dampen: 3s}
      ops: [{name: monitor, interval: 5s}]
constraints:
  - location: vip-connected
    resource: vip
    rules:
      - score-attribute: pingd
        expressions: [{attribute: pingd, op: defined}]
"""


def test_a_target_that_is_not_an_address_is_refused_at_apply_with_its_path() -> None:
    config = parse_cluster_config(CONFIG, "cluster.yaml")
    problems = [(format_path(loc), msg) for loc, msg in agent_problems(config)]
    assert problems == [
        ("resources[1].resource.params.targets", "'10.0.0.300' is not an address (IPv4 or "
         "IPv6, no names)"),
    ]  # fmt: skip
    good = parse_cluster_config(CONFIG.replace(" 10.0.0.300", ""), "cluster.yaml")
    assert agent_problems(good) == []


def test_the_recommended_rule_prefers_the_best_connected_node_and_never_bans() -> None:
    config = parse_cluster_config(CONFIG, "cluster.yaml")
    rule = config.constraints[0].rules[0]  # type: ignore[union-attr]
    assert rule_score(rule, {"pingd": "2000"}) == 2000
    assert rule_score(rule, {"pingd": "0"}) == 0  # lost: no preference, never -INFINITY
    assert rule_score(rule, {}) is None


# ---- score and dampening ---------------------------------------------------------------------


def test_score_is_reachable_targets_times_multiplier() -> None:
    assert score(2, 1000) == 2000
    assert score(0, 1000) == 0


def test_the_first_value_is_published_at_once() -> None:
    d = Dampener(5.0)
    assert d.observe(1000, now=0.0) == 1000


def test_a_change_is_published_only_once_it_held_dampen_seconds() -> None:
    d = Dampener(3.0)
    d.observe(1000, 0.0)
    seen = [d.observe(0, t) for t in (1.0, 2.0, 3.0, 3.9)]
    assert seen == [None, None, None, None]
    assert d.observe(0, 4.0) == 0  # different since 1.0, for 3 s
    assert d.published == 0
    assert d.observe(0, 5.0) is None  # once


def test_a_flap_shorter_than_dampen_is_never_published() -> None:
    d = Dampener(3.0)
    d.observe(1000, 0.0)
    for t in range(1, 30):
        # down for 2 rounds out of every 3: never 3 s in a row
        value = 0 if t % 3 else 1000
        assert d.observe(value, float(t)) is None
    assert d.published == 1000


def test_a_change_still_moving_is_published_dampen_after_it_began() -> None:
    d = Dampener(3.0)
    d.observe(2000, 0.0)
    assert d.observe(1000, 1.0) is None
    assert d.observe(0, 2.0) is None
    assert d.observe(0, 4.0) == 0


def test_dampen_zero_publishes_every_change() -> None:
    d = Dampener(0.0)
    d.observe(1000, 0.0)
    assert d.observe(0, 1.0) == 0
    assert d.observe(1000, 2.0) == 1000


# ---- the DC's events -------------------------------------------------------------------------


def test_every_node_losing_its_targets_raises_one_alert_and_its_end() -> None:
    config = parse_cluster_config(CONFIG.replace(" 10.0.0.300", ""), "cluster.yaml")
    up = {n: {"pingd": "1000"} for n in ("n1", "n2", "n3")}
    n3_lost = {**up, "n3": {"pingd": "0"}}
    all_lost = {n: {"pingd": "0"} for n in up}
    assert connectivity_events(config, None, up) == []
    one = connectivity_events(config, up, n3_lost)
    assert [(c.kind, c.node) for c in one] == [("node-lost", "n3")]
    every = connectivity_events(config, n3_lost, all_lost)
    assert [c.kind for c in every] == ["node-lost", "node-lost", "lost-everywhere"]
    assert every[-1].text.startswith("ALERT: every node lost its ping targets")
    assert connectivity_events(config, all_lost, all_lost) == []  # once, not every cycle
    back = connectivity_events(config, all_lost, {**all_lost, "n1": {"pingd": "1000"}})
    assert [c.kind for c in back] == ["node-regained", "regained-somewhere"]


def test_no_alert_without_a_ping_resource_or_without_values() -> None:
    lost = {"n1": {"pingd": "0"}}
    assert connectivity_events(parse_cluster_config("resources: []", "c"), {}, lost) == []
    assert not lost_everywhere({})
    assert not lost_everywhere({"n1": None})
    assert lost_everywhere({"n1": 0, "n2": None})


def test_the_dc_records_the_alert_as_a_connectivity_event() -> None:
    from hastack.model.events import EventKind, snapshot_events
    from hastack.model.members import ClusterSnapshot, MemberRecord, NodeKind
    from hastack.model.status import NodeReport

    config = parse_cluster_config(CONFIG.replace(" 10.0.0.300", ""), "cluster.yaml")
    members = {n: MemberRecord(n, NodeKind.FULL) for n in ("n1", "n2")}

    def view(values: dict[str, str]) -> ClusterSnapshot:
        statuses = {n: NodeReport(node=n, attributes={"pingd": v}) for n, v in values.items()}
        return ClusterSnapshot(1, None, members, {}, {}, (), config=config, statuses=statuses)

    events = snapshot_events(
        view({"n1": "1000", "n2": "0"}), view({"n1": "0", "n2": "0"}), writer="n2", now=1.0
    )
    alerts = [e for e in events if e.data.get("alert")]
    assert [e.kind for e in alerts] == [EventKind.CONNECTIVITY]
    assert alerts[0].data["state"] == "lost-everywhere"


def test_status_shows_the_alert_while_it_stands() -> None:
    """`hastack status` (text and JSON) shows the alert the DC raised, with the DC's own
    words, from the first view where every node lost its targets until one reaches them."""
    from hastack.model.events import snapshot_events
    from hastack.model.members import ClusterSnapshot, MemberRecord, NodeKind
    from hastack.model.status import NodeReport
    from hastack.ops.status import build_report
    from hastack.ops.status_text import render_text
    from hastack.store import EndpointStatus

    config = parse_cluster_config(CONFIG.replace(" 10.0.0.300", ""), "cluster.yaml")
    members = {n: MemberRecord(n, NodeKind.FULL) for n in ("n1", "n2")}

    def view(values: dict[str, str]) -> ClusterSnapshot:
        statuses = {n: NodeReport(node=n, attributes={"pingd": v}) for n, v in values.items()}
        return ClusterSnapshot(1, None, members, {}, {}, (), config=config, statuses=statuses)

    def shown(snapshot: ClusterSnapshot) -> tuple[list[str], list[str]]:
        report = build_report("lab", snapshot, [EndpointStatus("e1", True)], 1.0, explain=False)
        text = render_text(report).splitlines()
        block = (
            text[text.index("ALERTS:") + 1 : text.index("ALERTS:") + 3] if "ALERTS:" in text else []
        )
        return report.to_json()["alerts"], block

    before, lost, back = (
        view({"n1": "1000", "n2": "0"}),
        view({"n1": "0", "n2": "0"}),
        view({"n1": "0", "n2": "1000"}),
    )
    raised = [
        e.text for e in snapshot_events(before, lost, writer="n1", now=1.0) if e.data.get("alert")
    ]
    want = "every node lost its ping targets (pingd <= 0 on n1, n2); resources stay where they run"
    assert raised == [f"ALERT: {want}"]
    assert shown(lost) == ([want], [f"  * {want}", ""])
    assert shown(before) == ([], [])
    assert shown(back) == ([], [])


# ---- the probe and the agent on loopback -----------------------------------------------------


def test_icmp_echo_to_loopback_answers() -> None:
    assert asyncio.run(probe(Target(parse_targets("127.0.0.1")[0].address), 1.0))


def test_tcp_probe_sees_an_open_and_a_closed_port() -> None:
    async def run() -> tuple[bool, bool]:
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed = s.getsockname()[1]  # bound, never listening: refused
            found = await probe(parse_targets(f"127.0.0.1:{port}")[0], 1.0)
            refused = await probe(parse_targets(f"127.0.0.1:{closed}")[0], 1.0)
        server.close()
        return found, refused

    assert asyncio.run(run()) == (True, False)


def test_the_agent_publishes_monitors_and_stops(tmp_path: Path) -> None:
    assert NATIVE["ping"] is PingAgent

    def request(op: str, targets: str) -> OpRequest:
        return OpRequest(
            instance="ping:0", primitive="ping", op=op,
            params={"targets": targets, "interval": "100ms", "timeout": "200ms",
                    "dampen": "0", "multiplier": "10"},
            meta={}, timeout=5.0, state_dir=str(tmp_path), cluster={"node": "n1"},
        )  # fmt: skip

    async def run() -> list[tuple[int, object]]:
        agent = PingAgent()
        out = []
        for op in ("monitor", "start", "monitor", "stop", "monitor"):
            result = await agent.execute(request(op, "127.0.0.1 127.0.0.2"))
            out.append((result.rc, result.attributes))
        bad = await agent.execute(request("start", "not-an-address"))
        out.append((bad.rc, bad.reason))
        return out

    got = asyncio.run(run())
    assert got == [
        (7, None),  # not running before start
        (0, {"pingd": "20"}),  # both loopback addresses answer: 2 × 10
        (0, {"pingd": "20"}),
        (0, {"pingd": None}),  # stop deletes the attribute
        (7, None),
        (6, "targets: 'not-an-address' is not an address (IPv4 or IPv6, no names)"),
    ]


def test_a_probe_leaves_from_the_agents_namespace() -> None:
    """With a namespace the socket is made inside it: one that does not exist reaches
    nothing, where the same probe from the agent's own namespace answers; a target's
    interface that does not exist is not reached either (and does not end the probe)."""
    loopback = Target(parse_targets("127.0.0.1")[0].address)
    missing = f"hastack-absent-{os.getpid()}"

    async def run() -> tuple[bool, bool, bool, bool]:
        return (
            await probe(loopback, 1.0),
            await probe(loopback, 1.0, netns=missing),
            await probe(parse_targets("127.0.0.1:1")[0], 1.0, netns=missing),
            await probe(parse_targets(f"127.0.0.1@hs{os.getpid() % 10000}x")[0], 1.0),
        )

    assert asyncio.run(run()) == (True, False, False, False)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"), reason="namespaces need root")
def test_the_agent_probes_inside_its_netns(tmp_path: Path) -> None:
    """An agent with `netns:` probes from that namespace. Two namespaces of this test's own:
    `up` with its loopback up, an address only it has (198.51.100.7) and a TCP
    listener on its 127.0.0.1; `down` whose loopback is down. From `up` both targets answer;
    from `down` none; from the agent's own namespace the listener's port is refused (held
    bound, never listening, so nothing else can take it)."""
    tag = f"hsp{os.getpid() % 100000}{secrets.token_hex(2)}"
    up, down = f"{tag}u", f"{tag}d"
    for ns in (up, down):
        _ip("netns", "add", ns)
    try:
        _ip("-n", up, "link", "set", "lo", "up")
        _ip("-n", up, "addr", "add", "198.51.100.7/32", "dev", "lo")
        listener = call_in_netns(up, socket.socket)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        here = socket.socket()
        try:
            here.bind(("127.0.0.1", port))
        except OSError:
            pytest.skip(f"port {port} is taken in this namespace")
        targets = f"198.51.100.7 127.0.0.1:{port}"

        def request(op: str, netns: str | None, instance: str) -> OpRequest:
            return OpRequest(
                instance=instance, primitive="ping", op=op,
                params={"targets": targets, "interval": "100ms", "timeout": "300ms",
                        "dampen": "0", "multiplier": "10"},
                meta={}, timeout=5.0, netns=netns, state_dir=str(tmp_path),
                cluster={"node": "n1"},
            )  # fmt: skip

        async def run() -> dict[str, object]:
            agent = PingAgent()
            out: dict[str, object] = {}
            for netns, instance in ((up, "ping:0"), (down, "ping:1")):
                started = await agent.execute(request("start", netns, instance))
                await asyncio.sleep(0.3)  # a few rounds, from the probe task too
                monitored = await agent.execute(request("monitor", netns, instance))
                await agent.execute(request("stop", netns, instance))
                out[netns] = (started.attributes, monitored.rc, monitored.reason)
            out["tcp here"] = await probe(parse_targets(f"127.0.0.1:{port}")[0], 0.5)
            return out

        got = asyncio.run(run())
        here.close()
        listener.close()
        assert got == {
            up: ({"pingd": "20"}, 0, "2 of 2 reachable"),
            down: ({"pingd": "0"}, 0, "0 of 2 reachable"),
            "tcp here": False,
        }
    finally:
        for ns in (up, down):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, check=False)


def test_scenario_files_use_the_recommended_rule() -> None:
    # Never -INFINITY on pingd in what we ship (docs/connectivity.md).
    import yaml

    for path in Path(__file__).parent.parent.joinpath("scenarios").glob("net-*.yaml"):
        cluster = yaml.safe_load(path.read_text())["cluster"]
        rules = [r for c in cluster.get("constraints", []) for r in c.get("rules", [])]
        on_pingd = [r for r in rules if any(e["attribute"] == "pingd" for e in r["expressions"])]
        assert all(r.get("score-attribute") == "pingd" for r in on_pingd), path
        assert not any(str(r.get("score", "")).startswith("-") for r in rules), path


# ---- the checkers of the scenarios, on crafted histories (each must be able to fail) --------


def _sample(t: float, online: tuple[str, ...], vip: str = "n1") -> dict[str, object]:
    return {
        "collected_at": t,
        "nodes": [{"name": n, "online": n in online} for n in ("n1", "n2", "n3")],
        "resources": [{"instance": "vip", "node": vip, "role": "Started"}],
    }


FAULT = [{"time": 10.0, "f": "link-down", "host": "n3", "link": 0}]
ALL = ("n1", "n2", "n3")


def test_steady_passes_a_quiet_history() -> None:
    from hastack.checkers import check_steady

    statuses = [_sample(t, ALL) for t in range(0, 60)]
    result = check_steady(statuses, [], [], FAULT, end_of_run=60.0)
    assert result.valid is True, result.summary


def test_steady_fails_on_a_lost_member_a_move_a_lost_lease_or_a_fence() -> None:
    from hastack.checkers import check_steady

    quiet = [_sample(t, ALL) for t in range(0, 60)]
    offline = [*quiet[:20], _sample(20.0, ("n1", "n2")), *quiet[21:]]
    moved = quiet[:30] + [_sample(t, ALL, vip="n2") for t in range(30, 60)]
    lost = [{"t": 15.0, "node": "n3", "event": "membership-lost"}]
    fenced = [{"wall": 25.0, "node": "n3", "event": "dead", "by": "fence"}]
    cases = {
        "not online": check_steady(offline, [], [], FAULT, end_of_run=60.0),
        "was on n1": check_steady(moved, [], [], FAULT, end_of_run=60.0),
        "membership-lost": check_steady(quiet, lost, [], FAULT, end_of_run=60.0),
        "powered off by fence": check_steady(quiet, [], fenced, FAULT, end_of_run=60.0),
    }
    for said, result in cases.items():
        assert result.valid is False, said
        assert said in result.summary, (said, result.summary)
    # what happened before the fault is not held against the run
    early = [{"t": 5.0, "node": "n3", "event": "membership-lost"}]
    assert check_steady(quiet, early, [], FAULT, end_of_run=60.0).valid is True
    # no-fence lets resources move, nothing else
    assert check_steady(moved, [], [], FAULT, end_of_run=60.0, moves=True).valid is True
    assert check_steady(quiet, lost, [], FAULT, end_of_run=60.0, moves=True).valid is False
    # nothing to judge is never a pass
    assert check_steady([], [], [], FAULT, end_of_run=60.0).valid is None


def test_alert_check_needs_the_alert_within_the_run() -> None:
    from hastack.checkers import check_alert

    alert = {"t": 14.0, "node": "n1", "event": "connectivity", "text": "ALERT: ...",
             "data": {"alert": True}}  # fmt: skip
    regained = {**alert, "data": {"state": "node-regained"}}
    assert check_alert([alert], start=10.0, end_of_run=60.0).valid is True
    assert check_alert([regained], start=10.0, end_of_run=60.0).valid is False
    assert check_alert([alert], start=20.0, end_of_run=60.0).valid is False


# ---- the DC gathers every node's change over one round's spread ------------------------------


def test_the_dc_takes_the_nodes_changes_together_after_the_window() -> None:
    from hastack.model.connectivity import HeldAttributes

    hold = HeldAttributes()
    w = {"pingd": 2.0}
    up = {n: {"pingd": "1000"} for n in ("n1", "n2", "n3")}
    assert hold.view(w, up, 0.0)["n1"] == {"pingd": "1000"}
    # the holder notices first: the others are about to; nothing moves yet
    first = {**up, "n1": {"pingd": "0"}}
    assert hold.view(w, first, 10.0)["n1"] == {"pingd": "1000"}
    everyone = {n: {"pingd": "0"} for n in up}
    assert hold.view(w, everyone, 11.0)["n1"] == {"pingd": "1000"}
    seen = hold.view(w, everyone, 12.0)  # the window since 10.0 is over: all at once
    assert {n: a["pingd"] for n, a in seen.items()} == {"n1": "0", "n2": "0", "n3": "0"}


def test_a_lone_loss_is_taken_after_the_window_and_a_new_node_at_once() -> None:
    from hastack.model.connectivity import HeldAttributes

    hold = HeldAttributes()
    w = {"pingd": 2.0}
    up = {n: {"pingd": "1000"} for n in ("n1", "n2")}
    hold.view(w, up, 0.0)
    lost = {**up, "n1": {"pingd": "0"}}
    assert hold.view(w, lost, 5.0)["n1"]["pingd"] == "1000"
    assert hold.view(w, lost, 7.0)["n1"]["pingd"] == "0"
    joined = {**lost, "n3": {"pingd": "1000"}}
    assert hold.view(w, joined, 7.1)["n3"]["pingd"] == "1000"
    # a flap back within the window is never acted on
    flap = {**joined, "n2": {"pingd": "0"}}
    assert hold.view(w, flap, 8.0)["n2"]["pingd"] == "1000"
    assert hold.view(w, joined, 9.0)["n2"]["pingd"] == "1000"
    assert hold.view(w, joined, 20.0)["n2"]["pingd"] == "1000"


# ---- two links: etcd's URLs and the clients' endpoint order ----------------------------------


def test_endpoints_leave_a_dead_member_and_a_cut_link_at_the_first_retry() -> None:
    from hastack.lab.etcd import EtcdMember, interleaved_endpoints

    members = [
        EtcdMember(f"n{i}", f"10.251.4.1{i}", more_hosts=(f"10.252.4.1{i}",)) for i in (1, 2, 3)
    ]
    order = interleaved_endpoints(members, first=2)
    assert order == [
        "https://10.251.4.13:2379", "https://10.252.4.11:2379", "https://10.251.4.12:2379",
        "https://10.252.4.13:2379", "https://10.251.4.11:2379", "https://10.252.4.12:2379",
    ]  # fmt: skip
    for a, b in zip(order, order[1:] + order[:1], strict=True):
        assert a.split(".")[3] != b.split(".")[3]  # another member
        assert a.split(".")[1] != b.split(".")[1]  # on the other link
    single = [EtcdMember(f"n{i}", f"127.0.0.{i}") for i in (1, 2, 3)]
    assert interleaved_endpoints(single, first=1) == [
        "https://127.0.0.2:2379", "https://127.0.0.3:2379", "https://127.0.0.1:2379",
    ]  # fmt: skip


def test_etcd_listens_and_advertises_on_both_links() -> None:
    from hastack.lab.etcd import EtcdMember, etcd_argv

    members = [
        EtcdMember(f"n{i}", f"10.251.4.1{i}", more_hosts=(f"10.252.4.1{i}",)) for i in (1, 2)
    ]
    argv = etcd_argv(members[0], members, Path("/nonexistent"), token="t")
    flags = dict(itertools.pairwise(argv))
    assert flags["--listen-peer-urls"] == "https://10.251.4.11:2380,https://10.252.4.11:2380"
    assert flags["--advertise-client-urls"] == "https://10.251.4.11:2379,https://10.252.4.11:2379"
    assert flags["--initial-cluster"].split(",") == [
        "n1=https://10.251.4.11:2380", "n1=https://10.252.4.11:2380",
        "n2=https://10.251.4.12:2380", "n2=https://10.252.4.12:2380",
    ]  # fmt: skip


def test_heartbeats_go_to_every_address_of_a_peer_from_the_same_link() -> None:
    from hastack.membership.heartbeat import Heartbeat

    receivers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    try:
        for r, address in zip(receivers, ("127.0.0.1", "127.0.0.2"), strict=True):
            r.bind((address, 0))
            r.settimeout(2.0)
        hb = Heartbeat("a", ["127.0.0.3", "127.0.0.4"], 0)
        hb.start()
        try:
            hb.lease = 7
            peers = {"b": (("127.0.0.1", "127.0.0.2"), receivers[0].getsockname()[1])}
            # one port per node: give the second receiver the same port where it is free
            receivers[1].close()
            receivers[1] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            receivers[1].bind(("127.0.0.2", peers["b"][1]))
            receivers[1].settimeout(2.0)
            hb.send(peers)
            sources = [r.recvfrom(512)[1][0] for r in receivers]
        finally:
            hb.close()
    finally:
        for r in receivers:
            r.close()
    assert sources == ["127.0.0.3", "127.0.0.4"]  # link k's beat from our link-k address


# ---- the lease client hedges the renewal that follows a failure ------------------------------


def test_a_renewal_after_a_failure_goes_to_two_members_at_once() -> None:
    """n2 renews through its own member, which stalls while the members elect a new leader
    (the old leader's link was cut); the retry used to go to that old leader's member alone
    and fail too. Hedged, it goes to the next two endpoints; the healthy one answers."""
    import time as clock

    from hastack.errors import StoreTimeout
    from hastack.store.blocking import BlockingLeaseClient
    from hastack.store.tls import StoreCredentials

    endpoints = ["10.251.4.12:2379", "10.252.4.13:2379", "10.251.4.11:2379"]
    # No re-send within a call here: what is checked is the first keep-alives of a call.
    client = BlockingLeaseClient(
        endpoints, credentials=StoreCredentials(None, None), retry_every=10.0
    )
    asked: list[str] = []
    stuck = {"10.251.4.12:2379", "10.252.4.13:2379"}

    def attempt(endpoint: str, lease_id: int, timeout: float) -> tuple[int, int]:
        asked.append(endpoint)
        if endpoint in stuck:  # its own member, then the old leader's: stuck
            clock.sleep(timeout)
            raise StoreTimeout("context deadline exceeded")
        return 3, 42

    client._attempt = attempt  # type: ignore[method-assign]
    with pytest.raises(StoreTimeout):
        client.keep_alive(7, 0.2)
    assert asked == ["10.251.4.12:2379"]
    started = clock.monotonic()
    assert client.keep_alive(7, 0.2) == 3
    assert clock.monotonic() - started < 0.15  # the healthy member's answer, not the timeout
    assert sorted(asked[1:]) == ["10.251.4.11:2379", "10.252.4.13:2379"]
    assert client.endpoint == "10.251.4.11:2379"  # used from now on
    assert client.confirmed[0] == 42
    # and once it succeeded, the next renewal is a plain one again
    asked.clear()
    assert client.keep_alive(7, 0.2) == 3
    assert asked == ["10.251.4.11:2379"]
    client.close()


def test_an_unanswered_renewal_is_re_sent_to_the_next_member() -> None:
    """The etcd leader's host died: the keep-alive sent to a follower hangs (it forwards to
    the dead leader) until its deadline. One sent to the next member once the new leader
    serves renewals gets through: the renewal succeeds about then, not after the first
    keep-alive's whole store timeout."""
    import time as clock

    from hastack.errors import StoreTimeout
    from hastack.store.blocking import BlockingLeaseClient
    from hastack.store.tls import StoreCredentials

    client = BlockingLeaseClient(
        ["a:1", "b:1", "c:1"], credentials=StoreCredentials(None, None), retry_every=0.05
    )
    sent: list[tuple[str, float]] = []
    started = clock.monotonic()
    new_leader_at = started + 0.3  # renewals sent before this hang to their deadline

    def attempt(endpoint: str, lease_id: int, timeout: float) -> tuple[int, int]:
        now = clock.monotonic()
        sent.append((endpoint, now))
        if endpoint == "c:1" or now < new_leader_at:
            clock.sleep(timeout)
            raise StoreTimeout("context deadline exceeded")
        return 3, 9

    client._attempt = attempt  # type: ignore[method-assign]
    assert client.keep_alive(7, 2.0) == 3
    took = clock.monotonic() - started
    assert took < 2.0  # before the first keep-alive (hung for its 2 s) could have ended
    assert len(sent) > 2
    assert [e for e, _ in sent[:4]] == ["a:1", "b:1", "c:1", "a:1"]  # each time the next
    winner = client.endpoint
    assert winner in ("a:1", "b:1")
    # the send time counted is the winning keep-alive's, sent after the new leader came
    assert client.confirmed == (9, pytest.approx(client.confirmed[1]))
    assert client.confirmed[1] >= new_leader_at
    assert client.last_sends == len(sent)
    client.close()


def test_a_renewal_nobody_answers_ends_at_its_timeout() -> None:
    import time as clock

    from hastack.errors import StoreTimeout, StoreUnavailable
    from hastack.store.blocking import BlockingLeaseClient
    from hastack.store.tls import StoreCredentials

    client = BlockingLeaseClient(
        ["a:1", "b:1"], credentials=StoreCredentials(None, None), retry_every=0.05
    )

    def refused(endpoint: str, lease_id: int, timeout: float) -> tuple[int, int]:
        raise StoreUnavailable("UNAVAILABLE: connection refused")

    client._attempt = refused  # type: ignore[method-assign]
    started = clock.monotonic()
    with pytest.raises(StoreUnavailable, match="connection refused"):
        client.keep_alive(7, 0.3)
    assert 0.25 < clock.monotonic() - started < 0.6
    # refusals are answered at once: retried soon, but not spun on
    assert 3 <= client.last_sends <= 0.3 / 0.05 + 2

    def silent(endpoint: str, lease_id: int, timeout: float) -> tuple[int, int]:
        clock.sleep(timeout)
        raise StoreTimeout("deadline exceeded")

    client._attempt = silent  # type: ignore[method-assign]
    with pytest.raises(StoreTimeout):
        client.keep_alive(7, 0.3)
    client.close()


def test_a_hedged_renewal_that_finds_the_lease_gone_says_so() -> None:
    from hastack.errors import LeaseNotFound, StoreTimeout
    from hastack.store.blocking import BlockingLeaseClient
    from hastack.store.tls import StoreCredentials

    client = BlockingLeaseClient(["a:1", "b:1", "c:1"], credentials=StoreCredentials(None, None))

    def gone(endpoint: str, lease_id: int, timeout: float) -> tuple[int, int]:
        if endpoint == "b:1":
            raise LeaseNotFound("lease 7 has expired")
        raise StoreTimeout("deadline exceeded")

    client._hedge = True
    client._attempt = gone  # type: ignore[method-assign]
    with pytest.raises(LeaseNotFound):
        client.keep_alive(7, 0.2)


def test_a_failed_keep_alive_keeps_its_channel_and_every_member_is_dialed_first() -> None:
    """Under a saturated CPU, a keep-alive times out because the member is slow, not because
    the connection is bad: closing the channel made every re-sent keep-alive begin with a TLS
    handshake the starved members did not finish (bench/scale.py lost 55 memberships so).
    The first renewal dials every member; no failure closes a channel."""
    from hastack.errors import StoreTimeout, StoreUnavailable
    from hastack.store.blocking import BlockingLeaseClient
    from hastack.store.tls import StoreCredentials

    endpoints = ["127.0.0.1:1", "127.0.0.2:1", "127.0.0.3:1"]
    client = BlockingLeaseClient(
        endpoints, credentials=StoreCredentials(None, None), retry_every=0.05
    )
    outcomes = [StoreTimeout("deadline exceeded"), StoreUnavailable("UNAVAILABLE: handshake")]

    sent: list[str] = []

    def on(endpoint: str, channel: object, lease_id: int, deadline: float) -> tuple[int, int]:
        sent.append(endpoint)
        raise outcomes[len(sent) % 2]  # timeouts and refused handshakes, in turn

    client._keep_alive_on = on  # type: ignore[method-assign]
    with pytest.raises((StoreTimeout, StoreUnavailable)):
        client.keep_alive(7, 0.3)
    assert client.last_sends >= 3  # re-sent, each to the next member
    channels = dict(client._channels)
    assert sorted(channels) == endpoints  # every member dialed, none dropped
    with pytest.raises((StoreTimeout, StoreUnavailable)):
        client.keep_alive(7, 0.2)
    assert client._channels == channels  # the very same channels
    client.close()
    assert client._channels == {}
