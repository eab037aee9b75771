"""The lab's shape and fault rules as data: names, addresses, the nft ruleset, partitions,
and the refusal without root. No privileges needed."""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import sys
from pathlib import Path

import pytest
import yaml

from hastack.lab.net.lab import FAST_TIMINGS, Lab, LabError, precompile, vip_prefix_problems
from hastack.lab.net.topology import (
    NFT_CHAIN,
    HostRole,
    NetFaults,
    Topology,
    parse_partition,
    render_ruleset,
)
from hastack.lab.scenario import _substitute, load_scenario
from hastack.model.config import parse_cluster_config
from hastack.processes import ProcessRecord


def topo(links: int = 1, computes: int = 1) -> Topology:
    return Topology(prefix="hl1234", subnet=76, controllers=3, computes=computes, links=links)


def test_hosts_names_namespaces_and_addresses() -> None:
    t = topo(links=2)
    hosts = {h.name: h for h in t.hosts()}
    assert list(hosts) == ["n1", "n2", "n3", "c1", "client"]
    assert hosts["n2"].namespace == "hl1234-n2"
    assert hosts["n2"].addresses == ("10.251.76.12", "10.252.76.12")
    assert hosts["c1"].role is HostRole.COMPUTE
    assert hosts["c1"].address == "10.251.77.1"  # computes fill the second half of the /23
    hundred = Topology("hl1", 76, 3, 254, 1)
    assert hundred.host("c254").address == "10.251.77.254"
    assert hundred.host("c254").ports() == ("c254-0",)
    assert hosts["client"].ports() == ("client-0", "client-1")
    assert t.hub == "hl1234-hub"
    assert t.namespaces()[0] == "hl1234-hub"
    # Every address lies in the run's own networks, which are private 10/8 ranges.
    nets = t.networks()
    assert all(ipaddress.ip_address(a) in nets[k] for h in hosts.values()
               for k, a in enumerate(h.addresses))  # fmt: skip
    assert "10.251.76.13\tn3" in t.hosts_file("n1")


def test_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="--nodes"):
        Topology("hl1", 2, 0, 0, 1)
    with pytest.raises(ValueError, match="--links"):
        Topology("hl1", 2, 3, 0, 3)
    with pytest.raises(ValueError, match=r"--computes must be between 0 and 254"):
        Topology("hl1", 2, 3, 255, 1)
    with pytest.raises(ValueError, match="subnet octet must be even"):
        Topology("hl1", 1, 3, 0, 1)


def test_partition_parsing() -> None:
    names = [h.name for h in topo().hosts()]
    assert parse_partition("n1 | n2,n3", names) == (("n1",), ("n2", "n3"))
    assert parse_partition("n1 n2|n3|c1", names) == (("n1", "n2"), ("n3",), ("c1",))
    for bad, why in (("n1", "two groups"), ("n1 | n9", "no host"), ("n1 | n1", "two groups"),
                     ("n1 | ", "empty group")):  # fmt: skip
        with pytest.raises(ValueError, match=why):
            parse_partition(bad, names)


def test_ruleset_drops_between_groups_in_both_directions_only() -> None:
    t = topo(links=2)
    ports = {h.name: h.ports() for h in t.hosts()}
    text = render_ruleset(NetFaults(partition=(("n1",), ("n2", "n3"))), ports)
    assert "table bridge hastack_lab" in text
    assert f"chain {NFT_CHAIN}" in text
    assert "fwd" not in text.replace("forward", "")  # `fwd` is an nft keyword
    assert 'iifname { "n1-0", "n1-1" } oifname { "n2-0", "n2-1", "n3-0", "n3-1" } drop' in text
    assert 'iifname { "n2-0", "n2-1", "n3-0", "n3-1" } oifname { "n1-0", "n1-1" } drop' in text
    assert "client" not in text  # hosts not named stay connected to every side
    # The previous table is replaced in the same transaction.
    assert text.index("delete table") < text.index("chain")


def test_ruleset_loss_uses_numgen_and_nothing_when_healthy() -> None:
    t = topo()
    ports = {h.name: h.ports() for h in t.hosts()}
    text = render_ruleset(NetFaults(loss=(("n2", 30),)), ports)
    assert 'iifname { "n2-0" } numgen random mod 100 < 30 drop' in text
    assert 'oifname { "n2-0" } numgen random mod 100 < 30 drop' in text
    assert "drop" not in render_ruleset(NetFaults(), ports)
    total = render_ruleset(NetFaults(loss=(("n2", 100),)), ports)
    assert 'iifname { "n2-0" } drop' in total  # numgen's range is 0-99


def test_faults_round_trip_through_json() -> None:
    faults = NetFaults(partition=(("n1",), ("n2", "n3")), loss=(("n1", 5),))
    assert NetFaults.from_json(faults.to_json()) == faults


def test_without_root_the_lab_says_so_and_points_to_the_loopback_cluster(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hastack.lab.net import lab

    monkeypatch.setattr(lab.os, "geteuid", lambda: 1000)
    with pytest.raises(lab.LabError, match=r"needs root.*hastack cluster up"):
        lab.require_root()


@pytest.mark.parametrize(
    "path",
    sorted((Path(__file__).parent.parent / "scenarios").glob("*.yaml")),
    ids=lambda p: p.stem,
)
def test_every_scenario_is_one_config_apply_accepts(path: Path) -> None:
    """The lab applies a scenario's cluster part as `hastack config apply` would: a node a
    constraint or a fencing level names must be listed under `nodes` (found only when the
    lab was up, minutes into a run, before this test)."""
    scenario = load_scenario(path)
    names = {"net0": "10.251.0", "vip": "10.251.0.100", "python": sys.executable}
    names["net1"] = "10.252.0"
    cluster = _substitute(scenario.cluster, names)
    parse_cluster_config(yaml.safe_dump(cluster), str(path))
    # and one the lab stores: no VIP with a longer prefix than its link's
    networks = [ipaddress.IPv4Network(f"10.{251 + k}.0.0/23") for k in range(scenario.lab.links)]
    assert vip_prefix_problems(cluster, networks) == []


def test_a_vip_with_a_longer_prefix_than_the_labs_network_is_refused() -> None:
    """A /24 VIP on the lab's /23 became the source address of its holder's connections to
    the other etcd members, which refused them (not in the member's certificate): after the
    leader's host crashed, the survivors lost their memberships and Galera its quorum (G1)."""
    networks = topo(links=2).networks()
    net0, net1 = (str(n.network_address).rsplit(".", 1)[0] for n in networks)

    def config(*vips: tuple[str, str | None]) -> dict[str, object]:
        resources: list[dict[str, object]] = []
        for n, (ip, mask) in enumerate(vips):
            params = {"ip": ip} | ({"cidr_netmask": mask} if mask is not None else {})
            resources.append({"primitive": f"vip{n}", "agent": "hastack:vip", "params": params})
        return {"resources": [{"group": "g", "resources": resources}]}

    [problem] = vip_prefix_problems(config((f"{net0}.100", "24")), networks)
    assert problem.startswith(f"vip0: {net0}.100/24 has a longer prefix than the lab's network")
    assert 'cidr_netmask: "23"' in problem
    assert (
        len(vip_prefix_problems(config((f"{net1}.100", "24"), (f"{net0}.101", "25")), networks))
        == 2
    )
    fine = config(
        (f"{net0}.100", "23"), (f"{net1}.100", None), ("192.168.7.1", "24"), ("${vip}", "24")
    )
    assert vip_prefix_problems(fine, networks) == []


def _lab(computes: int) -> Lab:
    state = {
        "cluster": "lab",
        "prefix": "hl1234",
        "subnet": 76,
        "controllers": 3,
        "computes": computes,
        "links": 1,
        "election_ms": 500,
        "hosts": {},
        "timings": FAST_TIMINGS.model_dump(by_alias=True),
    }
    return Lab(Path("/nonexistent"), state)


def test_agents_start_in_waves_controllers_first() -> None:
    lab = _lab(25)
    waves = lab._waves(10)
    assert waves[0] == ["n1", "n2", "n3"]
    assert [len(w) for w in waves[1:]] == [10, 10, 5]
    assert [n for wave in waves for n in wave] == [h.name for h in lab.nodes()]
    with pytest.raises(LabError, match="at least 1"):
        lab._waves(0)


def test_sizes_the_plan_or_the_memory_cannot_hold_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hastack.lab.net import lab as lab_module

    monkeypatch.setattr(lab_module, "_available_mib", lambda: 1000)
    with pytest.raises(LabError, match=r"need about 6\.3 GiB of memory .* 1\.0 GiB is available"):
        lab_module._check_size(3, 100, 1)
    with pytest.raises(LabError, match="--computes must be between 0 and 254"):
        lab_module._check_size(3, 255, 1)
    lab_module._check_size(3, 5, 1)  # 750 MiB: fits


def test_the_amqp_client_skips_brokers_that_failed_lately_and_else_takes_the_oldest_failure() -> (
    None
):
    import time

    pytest.importorskip("aio_pika")
    from hastack.lab.workloads import QueueWorkload

    urls = [f"amqp://guest:guest@127.0.0.{i}:5672/" for i in (1, 2, 3)]
    w = QueueWorkload({"kind": "amqp-queue", "urls": urls}, [])
    now = time.monotonic()
    w._failed = {urls[0]: now - 1.0}
    assert {w._url(), w._url(), w._url()} == {urls[1], urls[2]}  # in turn, never the failed
    # All failed lately: the one that failed longest ago (a dead broker fails every client
    # that tries it; a live one failed once, when something it waited on died).
    w._failed = {urls[0]: now - 1.0, urls[1]: now - 3.0, urls[2]: now - 2.0}
    assert [w._url() for _ in range(3)] == [urls[1]] * 3


def test_computes_get_their_own_timings_and_an_old_lab_the_same_for_all() -> None:
    from hastack.lab.harness import AgentNode
    from hastack.lab.net.lab import REMOTE_TIMINGS
    from hastack.model.agent_config import leader_change_problem

    lab = _lab(2)
    compute, controller = AgentNode("c1", "remote", []), AgentNode("n1", "full", [])
    assert lab.timings_of(compute) == lab.timings_of(controller)  # made before: the same
    lab.state["remote_timings"] = REMOTE_TIMINGS.model_dump(by_alias=True)
    assert lab.timings_of(compute) == REMOTE_TIMINGS.model_dump(by_alias=True)
    assert lab.timings_of(controller) == FAST_TIMINGS.model_dump(by_alias=True)
    config = lab._agent_config(compute)
    assert config["timings"]["lease-ttl"] == REMOTE_TIMINGS.lease_ttl
    # Held to the same rules as the controllers' timings.
    assert leader_change_problem(REMOTE_TIMINGS, 0.5) is None
    assert REMOTE_TIMINGS.loss_after < REMOTE_TIMINGS.lease_ttl


def test_etcd_data_in_memory_lives_under_dev_shm_and_an_old_lab_keeps_it_on_disk() -> None:
    lab = _lab(0)
    assert lab.etcd_data_dir("n1") == Path("/nonexistent/n1/etcd")
    lab.state["etcd_data"] = "memory"
    assert lab.etcd_data_dir("n1") == Path("/dev/shm/hastack-lab-hl1234/n1")
    lab.state["etcd_data"] = "disk"
    assert lab.etcd_data_dir("n2") == Path("/nonexistent/n2/etcd")


def test_etcd_data_in_memory_needs_room_there(monkeypatch: pytest.MonkeyPatch) -> None:
    from hastack.lab.net import lab as lab_module

    monkeypatch.setattr(lab_module, "_available_mib", lambda: 100_000)
    monkeypatch.setattr(lab_module, "_free_mib", lambda _path: 200)
    with pytest.raises(LabError, match=r"needs about 384 MiB in /dev/shm .* --etcd-data disk"):
        lab_module._check_size(3, 5, 1, "memory")
    lab_module._check_size(3, 5, 1, "disk")  # on disk: /dev/shm does not matter


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10s,2s", "give 'same' or LEASE-TTL,RENEW-INTERVAL,STORE-TIMEOUT"),
        ("5s,2s,2.5s", "--compute-timings 5s,2s,2.5s: timings refused: unsafe timings"),
        ("10s,2s,0.5s", "cannot ride out an etcd leader change"),
    ],
)
def test_bad_compute_timings_are_refused_with_the_option_named(value: str, message: str) -> None:
    import argparse

    from hastack.cli.lab_cmd import _compute_timings
    from hastack.errors import HastackError

    args = argparse.Namespace(compute_timings=value, election_ms=500)
    with pytest.raises(HastackError, match=message):
        _compute_timings(args)
    assert _compute_timings(argparse.Namespace(compute_timings="same", election_ms=500)) is None
    good = _compute_timings(argparse.Namespace(compute_timings="8s,1s,2s", election_ms=500))
    assert good is not None
    assert good.loss_after == 5.0


def test_a_scenario_sets_the_computes_timings_checked_like_the_controllers() -> None:
    import pydantic

    from hastack.lab.net.lab import REMOTE_TIMINGS
    from hastack.lab.scenario import Scenario

    base = {"name": "s", "cluster": {}, "duration": "5s"}
    assert Scenario.model_validate(base).remote_timings() == REMOTE_TIMINGS
    assert Scenario.model_validate({**base, "compute-timings": "same"}).remote_timings() is None
    own = Scenario.model_validate(
        {
            **base,
            "compute-timings": {"lease-ttl": "8s", "renew-interval": "1s", "store-timeout": "2s"},
        }
    ).remote_timings()
    assert own is not None
    assert own.loss_after == 5.0
    with pytest.raises(pydantic.ValidationError, match="compute-timings with election-ms 500"):
        Scenario.model_validate(
            {
                **base,
                "election-ms": 500,
                "compute-timings": {
                    "lease-ttl": "10s",
                    "renew-interval": "2s",
                    "store-timeout": "0.5s",
                },
            }
        )
    with pytest.raises(pydantic.ValidationError, match="unsafe timings"):
        Scenario.model_validate(
            {
                **base,
                "compute-timings": {
                    "lease-ttl": "5s",
                    "renew-interval": "2s",
                    "store-timeout": "2.5s",
                },
            }
        )


def test_the_next_wave_waits_for_cpu_headroom_but_not_for_ever(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hastack.lab.net import lab as lab_module

    clock = [0.0]
    monkeypatch.setattr(lab_module.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(lab_module.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    # (busy, total) jiffies: 95 % busy for three seconds, then 50 %.
    samples = iter([(0, 0), (95, 100), (190, 200), (285, 300), (335, 400), (999, 999)])
    monkeypatch.setattr(lab_module, "_busy_ticks", lambda: next(samples))
    assert lab_module._pace(0.8, 10.0) == 4.0
    # Always busy: gives up after `longest`.
    monkeypatch.setattr(lab_module, "_busy_ticks", lambda: (clock[0] * 100, clock[0] * 100))
    clock[0] = 100.0
    assert lab_module._pace(0.8, 5.0) == 5.0


def test_compute_hosts_processes_start_nicer_than_the_controllers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hastack.lab.net import lab as lab_module

    seen: list[list[str]] = []

    def spawn(argv: list[str], log_path: Path) -> tuple[object, None]:
        seen.append(list(argv))
        return ProcessRecord(len(seen), 0), None

    groups: list[tuple[int, int]] = []
    monkeypatch.setattr(lab_module, "spawn", spawn)
    monkeypatch.setattr(lab_module, "set_autogroup_nice", lambda p, n: groups.append((p, n)))
    lab = _lab(1)
    lab._spawn("c1", ["true"], Path("/nonexistent/log"))
    lab._spawn("n1", ["true"], Path("/nonexistent/log"))
    assert seen[0][:4] == ["nice", "-n", str(lab_module.COMPUTE_NICE), "ip"]
    assert seen[1][0] == "ip"
    assert groups == [(1, lab_module.COMPUTE_NICE)]  # the compute's session; not n1's


def test_a_sessions_priority_is_set_through_proc_and_a_missing_process_says_so() -> None:
    import subprocess

    from hastack.processes import set_autogroup_nice

    if not Path("/proc/self/autogroup").exists():
        pytest.skip("this kernel has no autogroups")
    # A child in a session of its own has an autogroup of its own (the lab's processes are
    # started so); this test's own process may be in init's, which reads empty and refuses.
    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        path = Path(f"/proc/{child.pid}/autogroup")
        assert set_autogroup_nice(child.pid, 7)
        assert path.read_text().split()[-1] == "7"
        assert set_autogroup_nice(child.pid, 0)
        assert path.read_text().split()[-1] == "0"
    finally:
        child.kill()
        child.wait()
    assert not set_autogroup_nice(2**22 + 12345, 0)  # no such process


def test_the_lab_byte_compiles_the_package_once(tmp_path: Path) -> None:
    """`lab up` compiles what every agent imports, once (PYTHONDONTWRITEBYTECODE keeps each
    process from writing it); up-to-date modules are not compiled again, changed ones are."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "mod.py").write_text("X = 1\n")
    assert precompile(package) == 2
    cached = Path(importlib.util.cache_from_source(str(package / "sub" / "mod.py")))
    assert cached.exists()
    assert precompile(package) == 0
    later = cached.stat().st_mtime + 10
    os.utime(package / "sub" / "mod.py", (later, later))
    assert precompile(package) == 1


def test_a_cpu_group_is_made_with_its_shares_and_refuses_anothers(tmp_path: Path) -> None:
    from hastack.processes import make_cpu_group, remove_cpu_group

    assert make_cpu_group("x", 512, tmp_path) is None  # no CPU controller there
    (tmp_path / "cpu.shares").write_text("1024")
    group = make_cpu_group("lab-computes", 512, tmp_path)
    assert group == tmp_path / "lab-computes"
    assert (group / "cpu.shares").read_text() == "512"
    with pytest.raises(FileExistsError):
        make_cpu_group("lab-computes", 512, tmp_path)
    (group / "cpu.shares").unlink()
    assert remove_cpu_group(group)
    assert not remove_cpu_group(group)


def test_a_command_joins_its_cpu_group_before_it_runs(tmp_path: Path) -> None:
    import subprocess

    from hastack.processes import in_cpu_group

    argv = in_cpu_group(tmp_path, ["sh", "-c", 'echo "$$" > "$1"', "sh", str(tmp_path / "pid")])
    proc = subprocess.Popen(argv)
    assert proc.wait() == 0
    # The same process: it joined, then exec'd the command in place.
    joined = (tmp_path / "cgroup.procs").read_text().strip()
    assert joined == str(proc.pid) == (tmp_path / "pid").read_text().strip()
