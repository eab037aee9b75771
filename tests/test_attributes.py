"""Node attributes (docs/attributes.md): the shims' flags, the permanent edit, who may see a
node's transient attributes, the agent's socket, and a real OCF agent that sets its promotion
score with crm_master and is promoted for it (three real agents on a real etcd)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ClusterFactory
from hastack.controller import build_state
from hastack.executor import attrd_shim
from hastack.executor.attrd import AttributeServer, socket_path, write_shims
from hastack.executor.attrd_shim import ShimRequest, UsageError, format_answer, parse
from hastack.executor.lrm import LocalResourceManager
from hastack.model.config import ClusterConfig, NodeSpec, Role
from hastack.model.members import ClusterSnapshot, MemberRecord, NodeKind, NodeRecord
from hastack.model.operations import OpResult
from hastack.model.status import NodeReport
from hastack.ops.edits import EditRefused, set_node_attribute
from hastack.ops.status import collect_status
from hastack.ops.status_text import render_text
from helpers import wait_until
from test_executor import TEST_AGENTS, apply, running, snapshot

ENV = {"HASTACK_NODE": "n1", "OCF_RESOURCE_INSTANCE": "db"}


# ---- the shims' command lines ---------------------------------------------------------------


def test_crm_master_sets_the_promotion_score_of_the_agents_instance() -> None:
    r = parse("crm_master", ["-l", "reboot", "-v", "100"], ENV)
    assert r == ShimRequest("crm_master", "update", "master-db", "n1", "reboot", "100")
    assert parse("crm_master", ["-D"], ENV).command == "delete"
    q = parse("crm_master", ["-G", "-Q", "-N", "n2", "-r", "web"], ENV)
    assert (q.command, q.quiet, q.node, q.name) == ("query", True, "n2", "master-web")
    # crm_master's lifetime is reboot unless told otherwise
    assert parse("crm_master", ["-v", "5"], ENV).lifetime == "reboot"


def test_crm_attribute_flags_as_pacemaker_reads_them() -> None:
    # The galera agent's query: no command flag means query, --quiet prints the value only.
    r = parse("crm_attribute", ["-N", "n3", "-l", "reboot", "--name", "x-last", "--quiet"], ENV)
    assert (r.command, r.node, r.name, r.lifetime, r.quiet) == (
        "query",
        "n3",
        "x-last",
        "reboot",
        True,
    )
    # With a node and no lifetime, a node attribute is permanent (the nodes section).
    assert parse("crm_attribute", ["-N", "n1", "-n", "rack", "-v", "r1"], ENV).lifetime == "forever"
    assert parse("crm_attribute", ["-n", "rack", "-t", "status", "-G"], ENV).lifetime == "reboot"
    # -p: the promotion score, of OCF_RESOURCE_INSTANCE or of the resource given
    assert parse("crm_attribute", ["-p", "-v", "7"], ENV).name == "master-db"
    assert parse("crm_attribute", ["--promotion=web", "-v", "7"], ENV).name == "master-web"
    assert parse("crm_attribute", ["-pweb", "-G"], ENV).lifetime == "reboot"
    # glued and long forms
    r = parse("crm_attribute", ["-nrack", "--update=r2"], ENV)
    assert (r.name, r.value, r.command) == ("rack", "r2", "update")
    r = parse("crm_attribute", ["-n", "x", "-Dq"], ENV)
    assert (r.command, r.quiet) == ("delete", True)
    assert parse("crm_attribute", ["-n", "x", "-G", "-d", "0"], ENV).default == "0"


def test_attrd_updater_is_always_transient() -> None:
    r = parse("attrd_updater", ["-n", "pingd", "-U", "300", "-d", "5s", "-p"], ENV)
    assert (r.command, r.value, r.lifetime) == ("update", "300", "reboot")
    r = parse("attrd_updater", ["-n", "pingd", "-Q", "-N", "n2"], ENV)
    assert (r.command, r.node) == ("query", "n2")
    assert parse("attrd_updater", ["-n", "pingd", "-l", "forever", "-D"], ENV).lifetime == "reboot"


@pytest.mark.parametrize(
    ("tool", "argv", "why"),
    [
        ("crm_attribute", ["-v", "1"], "no attribute name"),
        ("crm_attribute", ["-n", "x", "-v", "1", "-D"], "one of query, update and delete"),
        ("crm_attribute", ["-n", "x", "-l", "sometimes"], "lifetime must be reboot or forever"),
        ("crm_attribute", ["-n", "x", "-t", "crm_config"], "node attributes only"),
        ("crm_attribute", ["-n", "x", "--bogus"], "unknown option --bogus"),
        ("crm_attribute", ["-n"], "-n needs a value"),
        ("crm_master", ["-n", "x", "-v", "1"], "unknown option -n"),
        ("attrd_updater", ["-n", "x", "stray"], "unexpected argument"),
    ],
)
def test_usage_errors_say_what_is_wrong(tool: str, argv: list[str], why: str) -> None:
    with pytest.raises(UsageError, match=why):
        parse(tool, argv, ENV)


def test_crm_master_outside_an_agent_needs_a_resource() -> None:
    with pytest.raises(UsageError, match="no resource"):
        parse("crm_master", ["-v", "1"], {"HASTACK_NODE": "n1"})
    with pytest.raises(UsageError, match="no node"):
        parse("crm_attribute", ["-n", "x", "-G"], {})


def test_query_answers_as_the_real_commands_print_them() -> None:
    q = parse("crm_attribute", ["-n", "x", "-l", "reboot", "-G"], ENV)
    assert format_answer(q, "5") == (0, "scope=status  name=x value=5\n")
    assert format_answer(q, None) == (attrd_shim.EXIT_NOSUCH, "")
    quiet = parse("crm_master", ["-G", "-q"], ENV)
    assert format_answer(quiet, "100") == (0, "100\n")
    a = parse("attrd_updater", ["-n", "pingd", "-Q"], ENV)
    assert format_answer(a, "3") == (0, 'name="pingd" host="n1" value="3"\n')
    d = parse("crm_attribute", ["-n", "x", "-G", "-q", "-d", "0"], ENV)
    assert format_answer(d, None) == (0, "0\n")


# ---- the permanent edit ---------------------------------------------------------------------


def test_set_node_attribute_edits_the_nodes_section() -> None:
    config = ClusterConfig(nodes=[NodeSpec(node="n1", attributes={"a": "1"})])
    one = set_node_attribute("n2", "rack", "r1")(config).config
    assert {n.node: dict(n.attributes) for n in one.nodes} == {
        "n1": {"a": "1"},
        "n2": {"rack": "r1"},
    }
    two = set_node_attribute("n1", "a", None)(one)
    assert dict(two.config.nodes[0].attributes) == {}
    assert two.message == "node n1: deleted a"
    with pytest.raises(EditRefused):
        set_node_attribute("n1", "bad name", "x")


# ---- who sees transient attributes ----------------------------------------------------------


def _snapshot(online: bool, fresh: bool = True) -> ClusterSnapshot:
    member = MemberRecord("n1", NodeKind.FULL, joined_at=100.0, attributes={"site": "a"})
    report = NodeReport("n1", updated=150.0 if fresh else 50.0, attributes={"master-db": "100"})
    return ClusterSnapshot(
        revision=1,
        dc=None,
        members={"n1": member} if online else {},
        nodes={"n1": NodeRecord("n1", NodeKind.FULL)},
        other={},
        problems=(),
        statuses={"n1": report},
    )


def test_build_state_uses_transient_attributes_only_of_an_online_node() -> None:
    config = ClusterConfig()
    on = build_state(_snapshot(True), config, now=0).nodes["n1"]
    assert on.online
    assert on.attributes == {"site": "a", "master-db": "100"}
    gone = build_state(_snapshot(False), config, now=0).nodes["n1"]
    assert not gone.online
    assert gone.attributes == {}
    # a report from the agent's previous life (before it joined again) counts for nothing
    stale = build_state(_snapshot(True, fresh=False), config, now=0).nodes["n1"]
    assert stale.attributes == {"site": "a"}
    suspect = build_state(_snapshot(True), config, now=0, suspects=frozenset({"n1"})).nodes["n1"]
    assert "master-db" not in suspect.attributes


# ---- the executor's side --------------------------------------------------------------------


async def _noop_publish(report: NodeReport) -> None:
    return None


def _lrm(tmp_path: Path) -> LocalResourceManager:
    return LocalResourceManager("n1", state_dir=str(tmp_path), publish=_noop_publish)


async def test_the_socket_sets_and_queries_this_nodes_attributes(tmp_path: Path) -> None:
    lrm = _lrm(tmp_path)
    server = AttributeServer(socket_path(str(tmp_path)), lrm)
    await server.start()
    shims = write_shims(tmp_path / "bin")
    env = {
        "PATH": f"{shims}:/usr/bin:/bin",
        "HASTACK_ATTRD_SOCKET": server.path,
        "HASTACK_NODE": "n1",
        "OCF_RESOURCE_INSTANCE": "db",
    }

    async def run(*argv: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    try:
        assert (await run("crm_master", "-l", "reboot", "-v", "100"))[0] == 0
        assert lrm.attributes == {"master-db": "100"}
        assert await run("crm_master", "-G", "-q") == (0, "100\n", "")
        assert (await run("attrd_updater", "-n", "pingd", "-U", "2"))[0] == 0
        assert await run("crm_attribute", "-n", "pingd", "-l", "reboot", "-G") == (
            0,
            "scope=status  name=pingd value=2\n",
            "",
        )
        assert (await run("crm_master", "-D"))[0] == 0
        code, out, _ = await run("crm_master", "-G", "-q")
        assert (code, out) == (attrd_shim.EXIT_NOSUCH, "")
        # another node's transient attributes belong to its own agent
        code, _, err = await run("crm_attribute", "-N", "n2", "-n", "x", "-l", "reboot", "-v", "1")
        assert code == 1
        assert "n2's own agent" in err
        # permanent ones need the store, which this executor was not given
        code, _, err = await run("crm_attribute", "-N", "n1", "-n", "rack", "-v", "r1")
        assert code == 1
        assert "store" in err
        assert lrm.attributes == {"pingd": "2"}
    finally:
        await server.close()
    # no agent listening: the command says so, with its own exit code
    code, _, err = await run("crm_master", "-v", "1")
    assert code == attrd_shim.EXIT_UNAVAILABLE
    assert "cannot reach" in err


def test_results_carry_attribute_changes(tmp_path: Path) -> None:
    lrm = _lrm(tmp_path)
    lrm.apply_attributes({"a": "1", "b": "2"})
    lrm.apply_attributes(OpResult(0, attributes={"a": None, "c": "3"}).attributes or {})
    assert lrm.attributes == {"b": "2", "c": "3"}
    assert lrm.report().attributes == {"b": "2", "c": "3"}


def test_the_shim_runs_without_the_agents_environment() -> None:
    # The scripts run the shim by path with a bare environment: it must import nothing of
    # hastack (OCF agents get no PYTHONPATH).
    source = Path(attrd_shim.__file__).read_text()
    assert "import hastack" not in source
    assert "from hastack" not in source
    done = subprocess.run(
        [sys.executable, "-I", attrd_shim.__file__, "crm_master", "-v", "1"],
        env={"OCF_RESOURCE_INSTANCE": "db", "HASTACK_NODE": "n1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == attrd_shim.EXIT_UNAVAILABLE, done.stderr
    assert "HASTACK_ATTRD_SOCKET" in done.stderr


# ---- a real OCF agent under three real hastack agents ---------------------------------------


PROMOTER = """\
properties: {{stonith-enabled: false}}
op-defaults: {{timeout: 10s}}
resources:
  - clone: pr-clone
    promotable: true
    meta: {{promoted-max: 1}}
    resource:
      primitive: pr
      agent: ocf:hastack-test:promoter
      params: {{log: "{log}", scores: "n1=5 n2=50 n3=10", forever: seen-by-agent}}
      ops:
        - {{name: monitor, interval: 1s, role: Unpromoted}}
        - {{name: monitor, interval: 2s, role: Promoted}}
"""


@pytest.mark.timeout(120)
def test_an_ocf_agent_sets_its_promotion_score_and_is_promoted(
    local_cluster: ClusterFactory, tmp_path: Path
) -> None:
    lc = local_cluster(3, agent_settings={"ocf-agent-dirs": [TEST_AGENTS]})
    log = tmp_path / "promoter.log"
    log.touch()
    apply(lc, PROMOTER.format(log=log))
    want = {"n1": Role.UNPROMOTED, "n2": Role.PROMOTED, "n3": Role.UNPROMOTED}
    wait_until(lambda: running(lc, "pr") == want, 60, 0.2)
    snap = snapshot(lc)
    scores = {n: snap.statuses[n].attributes.get("master-pr") for n in ("n1", "n2", "n3")}
    assert scores == {"n1": "5", "n2": "50", "n3": "10"}
    lines = log.read_text().splitlines()
    # each agent read its own score back through crm_master -G -q
    assert {"start n1 read=5", "start n2 read=50", "start n3 read=10"} <= set(lines)
    # The scores arrive one by one: an instance with a lower score may be promoted first
    # and the promotion moves when a higher one appears (as Pacemaker does); the last word
    # is n2's.
    promotes = [line for line in lines if line.startswith("promote")]
    assert promotes[-1] == "promote n2", promotes
    # the permanent attribute went into the configuration, by CAS from three agents at once
    config = snap.config
    assert config is not None
    assert {n.node: n.attributes.get("seen-by-agent") for n in config.nodes} == {
        "n1": "set-by-n1",
        "n2": "set-by-n2",
        "n3": "set-by-n3",
    }
    # hastack status shows them
    client = lc.client()
    report = asyncio.run(collect_status(client))
    text = render_text(report)
    assert "Node Attributes:" in text
    assert "master-pr     : 50" in text
    assert "seen-by-agent : set-by-n2 (permanent)" in text
    node2 = next(n for n in report.to_json()["nodes"] if n["name"] == "n2")
    assert node2["attributes"]["master-pr"] == "50"
    assert node2["permanent"] == {"seen-by-agent": "set-by-n2"}
