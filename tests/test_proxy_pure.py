"""The proxy's pure core: balancing, rise/fall, backup and sticky rules, cluster mapping,
configuration refusals with lines."""

from __future__ import annotations

import collections
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hastack.errors import ConfigError
from hastack.model.config import Role
from hastack.model.members import MemberRecord, NodeKind
from hastack.model.status import NodeReport, ResourceReport
from hastack.proxy.balance import First, LeastConn, RoundRobin, SourceHash
from hastack.proxy.checks import judge_galera, parse_greeting
from hastack.proxy.config import CheckSpec, ClusterPool, HttpCheckSpec, parse_config
from hastack.proxy.follow import follow
from hastack.proxy.health import Health, describe, next_interval, observe
from hastack.proxy.runtime import share
from hastack.proxy.stats import add_into
from hastack.proxy.view import BackendView, ServerState, ServerView, candidates, choose_active


@dataclass
class S:
    name: str
    weight: int = 1
    load: int = 0
    maxconn: int = 0


def picks(
    balancer: RoundRobin | LeastConn | SourceHash | First, servers: list[S], n: int
) -> list[str]:
    out = []
    for _ in range(n):
        chosen = balancer.pick(servers, b"10.0.0.1")
        assert chosen is not None
        out.append(chosen.name)
    return out


def test_smooth_weighted_round_robin() -> None:
    servers = [S("a", 5), S("b", 1), S("c", 1)]
    assert picks(RoundRobin(), servers, 7) == ["a", "a", "b", "a", "c", "a", "a"]
    assert collections.Counter(picks(RoundRobin(), servers, 700)) == {"a": 500, "b": 100, "c": 100}


def test_round_robin_skips_full_excluded_and_zero_weight() -> None:
    servers = [S("a", maxconn=1, load=1), S("b", weight=0), S("c"), S("d")]
    rr = RoundRobin()
    assert set(picks(rr, servers, 4)) == {"c", "d"}
    assert rr.pick(servers, b"", exclude={"c"}).name == "d"  # type: ignore[union-attr]
    assert rr.pick(servers, b"", exclude={"c", "d"}) is None


def test_leastconn_prefers_lowest_load_per_weight() -> None:
    servers = [S("a", weight=1, load=2), S("b", weight=2, load=3), S("c", weight=1, load=5)]
    assert LeastConn().pick(servers, b"").name == "b"  # type: ignore[union-attr]  # 4/2 < 3/1
    even = [S("a"), S("b"), S("c")]
    lc = LeastConn()
    assert set(picks(lc, even, 3)) == {"a", "b", "c"}  # ties go round


def test_first_fills_in_order() -> None:
    servers = [S("a", maxconn=2, load=2), S("b", maxconn=2), S("c")]
    assert First().pick(servers, b"").name == "b"  # type: ignore[union-attr]


@given(
    clients=st.lists(st.binary(min_size=4, max_size=4), min_size=20, max_size=60, unique=True),
    removed=st.integers(min_value=0, max_value=3),
)
def test_source_hash_moves_only_the_clients_of_a_removed_server(
    clients: list[bytes], removed: int
) -> None:
    servers = [S(f"s{i}") for i in range(4)]
    sh = SourceHash()
    before = {c: sh.pick(servers, c).name for c in clients}  # type: ignore[union-attr]
    fewer = [s for i, s in enumerate(servers) if i != removed]
    after = {c: sh.pick(fewer, c).name for c in clients}  # type: ignore[union-attr]
    for client in clients:
        if before[client] != f"s{removed}":
            assert after[client] == before[client]


def test_source_hash_respects_weights() -> None:
    servers = [S("a", weight=3), S("b", weight=1)]
    counts = collections.Counter(
        SourceHash().pick(servers, i.to_bytes(4, "big")).name  # type: ignore[union-attr]
        for i in range(4000)
    )
    assert 0.70 < counts["a"] / 4000 < 0.80


@given(st.lists(st.booleans(), max_size=40), st.integers(1, 5), st.integers(1, 5))
def test_rise_and_fall(results: list[bool], rise: int, fall: int) -> None:
    health = Health(up=True)
    run_ok = run_bad = 0
    for ok in results:
        was = health.up
        health = observe(health, ok, rise, fall)
        run_ok, run_bad = (run_ok + 1, 0) if ok else (0, run_bad + 1)
        if was and not health.up:
            assert run_bad >= fall
        if not was and health.up:
            assert run_ok >= rise
        if was and ok:
            assert health == Health(True, 0)


def test_intervals_and_descriptions() -> None:
    spec = CheckSpec(interval=2.0, fastinter=0.5, downinter=5.0, rise=2, fall=3)
    assert next_interval(Health(True), spec) == 2.0
    going_down = observe(Health(True), False, 2, 3)
    assert next_interval(going_down, spec) == 0.5
    assert describe(going_down, spec) == "UP 1/3"
    assert next_interval(Health(False), spec) == 5.0
    assert describe(observe(Health(False), True, 2, 3), spec) == "DOWN 1/2"


def view(name: str, state: str = "up", backup: bool = False, weight: int = 1) -> ServerView:
    return ServerView(name, "127.0.0.1", 1, ServerState(state), weight, backup)


def test_backups_only_when_no_primary() -> None:
    servers = [view("a"), view("b", backup=True), view("c", backup=True)]
    assert [s.name for s in candidates(servers, sticky=False)] == ["a"]
    servers[0] = view("a", "down")
    assert [s.name for s in candidates(servers, sticky=False)] == ["b"]
    assert [s.name for s in candidates(servers, sticky=False, all_backups=True)] == ["b", "c"]
    servers[0] = view("a", "drain")
    assert [s.name for s in candidates(servers, sticky=False)] == ["b"]


def test_sticky_active_never_flaps_back() -> None:
    servers = [view("db1"), view("db2", backup=True), view("db3", backup=True)]
    active = choose_active(servers, None)
    assert active == "db1"
    servers[0] = view("db1", "down")
    active = choose_active(servers, active)
    assert active == "db2"
    servers[0] = view("db1")  # back up: stays on db2
    assert choose_active(servers, active) == "db2"
    servers[1] = view("db2", "maint")
    assert choose_active(servers, "db2") == "db1"
    assert [s.name for s in candidates(servers, sticky=True, active="db1")] == ["db1"]
    assert choose_active([view("x", "down")], "x") is None


def test_view_round_trips_through_json() -> None:
    original = BackendView("be", (view("a"), view("b", "drain", True, 7)), "a")
    assert BackendView.from_json(original.to_json()) == original


def test_follow_maps_instances_to_member_addresses() -> None:
    members = {
        "n1": MemberRecord("n1", NodeKind.FULL, addresses=("10.0.0.11", "192.168.1.11")),
        "n2": MemberRecord("n2", NodeKind.FULL, addresses=("10.0.0.12",)),
    }
    reports = {
        "n1": NodeReport(
            "n1",
            resources={
                "api:0": ResourceReport(Role.STARTED),
                "db:0": ResourceReport(Role.PROMOTED),
            },
        ),
        "n2": NodeReport(
            "n2",
            resources={
                "api:1": ResourceReport(Role.STARTED, failed=True),
                "db:1": ResourceReport(Role.UNPROMOTED),
                "apiary": ResourceReport(Role.STARTED),
            },
        ),
        "n3": NodeReport("n3", resources={"api:2": ResourceReport(Role.STARTED)}),  # offline
    }
    api = follow(ClusterPool(resource="api", port=8774), members, reports)
    assert [(e.name, e.host, e.port) for e in api] == [("n1", "10.0.0.11", 8774)]
    db_any = follow(ClusterPool(resource="db", port=3306), members, reports)
    assert [e.name for e in db_any] == ["n1", "n2"]
    writer = follow(ClusterPool(resource="db", port=3306, role="promoted"), members, reports)
    assert [e.name for e in writer] == ["n1"]
    net = ClusterPool(resource="db", port=3306, network="192.168.1.0/24")  # type: ignore[arg-type]
    assert [e.host for e in follow(net, members, reports)] == ["192.168.1.11"]


def test_http_expectations() -> None:
    check = HttpCheckSpec(expect=[200, "3xx"])
    assert check.accepts(200)
    assert check.accepts(302)
    assert not check.accepts(204)
    assert HttpCheckSpec().accepts(204)


def test_galera_judgement_and_mysql_greeting() -> None:
    assert judge_galera({"wsrep_local_state": "4", "wsrep_cluster_status": "Primary"})
    with pytest.raises(Exception, match="Donor"):
        judge_galera({"wsrep_local_state": "2", "wsrep_cluster_status": "Primary"})
    assert parse_greeting(b"\x0a10.11.6-MariaDB\x00rest") == "10.11.6-MariaDB"
    with pytest.raises(Exception, match="1040: Too many"):
        parse_greeting(b"\xff\x10\x04#08004Too many connections")


def test_share_splits_limits_over_workers() -> None:
    assert [share(10, i, 3) for i in range(3)] == [4, 3, 3]
    assert [share(1, i, 2) for i in range(2)] == [1, 1]  # never 0: each worker gets a slot
    assert share(0, 0, 4) == 0


def test_add_into_sums_nested_counters() -> None:
    total = add_into({}, {"a": 1, "b": {"c": 2}, "r": [1, 2]})
    add_into(total, {"a": 2, "b": {"c": 3, "d": 1}, "r": [1, 1], "s": "x"})
    assert total == {"a": 3, "b": {"c": 5, "d": 1}, "r": [2, 3]}


CLUSTER_LINE = (
    "cluster: {name: prod, etcd: {endpoints: [https://10.0.0.11:2379],"
    " tls: {ca: c, cert: n, key: k}}}\n"
)
GOOD = (
    """\
workers: 2
admin: {bind: 127.0.0.1:8404}
"""
    + CLUSTER_LINE
    + """\
frontends:
  - {name: api, bind: [10.0.0.10:8774], backend: nova}
  - {name: db, bind: [10.0.0.10:3306], backend: galera, mode: tcp}
backends:
  - name: nova
    cluster: {resource: nova-api, port: 8774}
    check: {type: http, interval: 2s, http: {path: /healthcheck}}
  - name: galera
    mode: tcp
    sticky: true
    on-marked-down: shutdown-sessions
    check: {type: galera, mysql: {user: haproxy, password: x}, fastinter: 200ms}
    servers:
      - {name: db1, address: 10.0.0.11:3306}
      - {name: db2, address: 10.0.0.12:3306, backup: true}
"""
)


def test_a_full_configuration_is_accepted() -> None:
    config = parse_config(GOOD, "proxy.yaml")
    galera = config.backend("galera")
    assert galera.sticky
    assert galera.check is not None
    assert galera.check.fastinter == 0.2
    assert config.backend("nova").cluster is not None


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("backend: nova}", "backend: cinder}"),
            "proxy.yaml:5: frontends[0].backend: no backend 'cinder'",
        ),
        (
            ("mode: tcp}", "mode: udp}"),
            "proxy.yaml:6: frontends[1].mode: Input should be 'http' or 'tcp'",
        ),
        (
            ("backend: galera, mode: tcp}", "backend: galera}"),
            "proxy.yaml:6: frontends[1].mode: frontend is http but backend 'galera' is tcp",
        ),
        (("user: haproxy, ", ""), "proxy.yaml:15: backends[1].check: a galera check logs in"),
        (
            ("10.0.0.12:3306", "10.0.0.12"),
            "proxy.yaml:18: backends[1].servers[1].address: not an address",
        ),
        (
            ("fastinter: 200ms", "fastinter: soon"),
            "proxy.yaml:15: backends[1].check.fastinter: not a duration",
        ),
        (("sticky: true", "stiky: true"), "proxy.yaml:13: backends[1].stiky: unknown key"),
        (
            (CLUSTER_LINE, ""),
            "proxy.yaml:8: backends[0].cluster: follows a cluster resource",
        ),
        (
            ("[10.0.0.10:3306]", "[10.0.0.10:8774]"),
            "proxy.yaml:6: frontends[1].bind[0]: 10.0.0.10:8774 is already bound",
        ),
    ],
)
def test_refusals_name_the_line(change: tuple[str, str], expected: str) -> None:
    text = GOOD.replace(*change)
    assert text != GOOD
    with pytest.raises(ConfigError) as info:
        parse_config(text, "proxy.yaml")
    assert any(p.startswith(expected) for p in info.value.problems), info.value.problems
