"""`hastack init` (docs/deploy.md): bad host lists refused whole, naming the host, nothing
written; a good one gives files that a real etcd, real agents and systemd accept."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hastack.deploy import InitError, write_deployment
from hastack.model.agent_config import parse_agent_config
from hastack.processes import ProcessRecord, spawn, stop
from hastack.store.tls import check_tls_files

THREE = ["ctl-1=10.0.0.11", "ctl-2=10.0.0.12", "ctl-3=10.0.0.13"]


def refused(tmp_path: Path, controllers: list[str], computes: list[str] = ()) -> list[str]:
    out = tmp_path / "out"
    with pytest.raises(InitError) as caught:
        write_deployment(out, "prod", controllers, list(computes), check_routes=False)
    # Nothing half-written: no output, no staging directory left beside it.
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []
    return caught.value.problems


def test_bad_host_lists_are_refused_naming_the_host(tmp_path: Path) -> None:
    problems = refused(tmp_path, [*THREE, "ctl-1=10.0.0.14"], ["cmp-1=10.0.0.12", "cmp 2=10.0.0.9"])
    assert "ctl-1: the name is given twice" in problems
    assert "cmp-1: address 10.0.0.12 is already ctl-2's" in problems
    assert any(p.startswith("cmp 2=10.0.0.9: 'cmp 2' is not a valid node name") for p in problems)
    assert refused(tmp_path, ["ctl-1=10.0.0.11", "ctl-2=10.0.0.12"]) == [
        "2 controllers: etcd needs a majority, so 2 tolerate no more failures than 1; "
        "give an odd number (3 or 5)"
    ]
    assert refused(tmp_path, ["ctl-1=10.0.0.300"]) == ["ctl-1: '10.0.0.300' is not an IP address"]
    assert refused(tmp_path, ["ctl-1=0.0.0.0"])[0].startswith("ctl-1: 0.0.0.0 cannot be")
    mixed = refused(tmp_path, ["ctl-1=10.0.0.11"], ["cmp-1=127.0.0.1"])
    assert mixed == ["cmp-1: 127.0.0.1 is a loopback address: other hosts could never reach it"]
    assert refused(tmp_path, ["ctl-1"]) == ["ctl-1: want NAME=ADDRESS (e.g. ctl-1=10.0.0.11)"]


def test_an_existing_directory_is_never_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine").write_text("keep")
    with pytest.raises(InitError, match="exists: init writes a new directory"):
        write_deployment(out, "prod", THREE, check_routes=False)
    assert (out / "mine").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.skipif(os.geteuid() != 0, reason="a network namespace needs root")
def test_an_unreachable_address_is_named(tmp_path: Path) -> None:
    """In a network namespace of its own with one network (10.77.0.0/24) and no default
    route: hosts on it pass, the one elsewhere is named. Nothing is sent."""
    out = tmp_path / "out"
    script = (
        "ip link set lo up && ip link add d0 type veth peer name d1 && ip link set d1 up && "
        'ip addr add 10.77.0.1/24 dev d0 && ip link set d0 up && exec "$@"'
    )
    hosts = ["ctl-1=10.77.0.11", "ctl-2=10.77.0.12", "ctl-3=10.78.0.13"]
    init = [sys.executable, "-m", "hastack", "init", "prod", *hosts, "-o", str(out)]
    result = subprocess.run(
        ["unshare", "--net", "sh", "-c", script, "sh", *init],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "ctl-3: 10.78.0.13 is unreachable from here (Network is unreachable)" in result.stderr
    assert "ctl-1" not in result.stderr
    assert not out.exists()


def _installed(out: Path, host: str, root: Path) -> Path:
    """The host's tree with its absolute paths pointed into `root` (as if copied to /)."""
    tree = out / "hosts" / host
    for path in tree.rglob("*.y*ml"):
        text = path.read_text()
        text = text.replace("/etc/hastack", str(tree / "etc" / "hastack"))
        text = text.replace("/var/lib/hastack", str(root / host))
        path.write_text(text)
    return tree / "etc" / "hastack"


def test_the_files_make_a_working_cluster(tmp_path: Path) -> None:
    """Three controllers on loopback from `hastack init`'s own files: etcd members started
    with its etcd.conf.yml, agents with its agent.yaml, the operator's client.yaml finds a DC;
    systemd accepts its units. (Shares the machine-wide lab lock through the test command.)"""
    base = f"127.{random.randint(100, 254)}.{random.randint(1, 254)}"
    names = [f"ctl-{i}" for i in (1, 2, 3)]
    out = tmp_path / "out"
    hastack = shutil.which("hastack", path=str(Path(sys.executable).parent)) or sys.executable
    write_deployment(
        out,
        "prod",
        [f"{n}={base}.{11 + i}" for i, n in enumerate(names)],
        hastack_bin=hastack,
        etcd_bin=shutil.which("etcd") or "/usr/bin/etcd",
    )
    # Keys are private; every certificate checks out against the CA.
    for n in names:
        pki = out / "hosts" / n / "etc" / "hastack" / "pki"
        assert (pki / "node.key").stat().st_mode & 0o777 == 0o600
        assert (pki / "etcd.key").stat().st_mode & 0o777 == 0o600
    if shutil.which("systemd-analyze"):
        units = sorted((out / "hosts" / "ctl-1" / "etc" / "systemd" / "system").iterdir())
        verify = subprocess.run(
            ["systemd-analyze", "verify", *map(str, units)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert verify.returncode == 0, verify.stderr
    records: list[ProcessRecord] = []
    try:
        etcs = {n: _installed(out, n, tmp_path / "state") for n in names}
        for n in names:
            (tmp_path / "state" / n).mkdir(parents=True)
            config = parse_agent_config((etcs[n] / "agent.yaml").read_text(), "agent.yaml")
            assert config.etcd.tls is not None
            check_tls_files(config.etcd.tls)
            etcd = yaml.safe_load((etcs[n] / "etcd.conf.yml").read_text())
            assert etcd["client-transport-security"]["client-cert-auth"] is True
            record, _ = spawn(
                ["etcd", "--config-file", str(etcs[n] / "etcd.conf.yml")],
                log_path=tmp_path / f"{n}-etcd.log",
            )
            records.append(record)
        for n in names:
            record, _ = spawn(
                [sys.executable, "-m", "hastack", "agent", "--config", str(etcs[n] / "agent.yaml")],
                log_path=tmp_path / f"{n}-agent.log",
            )
            records.append(record)
        operator = out / "operator" / "etc" / "hastack"
        client = operator / "client.yaml"
        client.write_text(client.read_text().replace("/etc/hastack", str(operator)))
        deadline = time.monotonic() + 60
        while True:
            result = subprocess.run(
                [sys.executable, "-m", "hastack", "status", "--config", str(client)],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if "Current DC: ctl-" in result.stdout and "Online: [ ctl-1 ctl-2 ctl-3 ]" in (
                result.stdout
            ):
                break
            assert time.monotonic() < deadline, result.stdout + result.stderr
            time.sleep(0.5)
        assert "etcd 3 of 3 members healthy" in result.stdout
    finally:
        for record in reversed(records):
            stop(record, grace=5.0)
