"""The REST API in process, on the in-memory store: every action makes the change the
operations layer's edit makes, bad input is refused with its reason and changes nothing,
credentials are checked, health follows the agent's own view, metrics are Prometheus text.
(Real agents, the dashboard in a browser and the DC killed: tests/test_api_cluster.py.)"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from hastack.api.counters import AgentCounters, LocalView
from hastack.api.server import Api, build_app
from hastack.auth import Role, TokenFile, add_token
from hastack.model.agent_config import AgentConfig
from hastack.model.config import ClusterConfig, parse_cluster_config
from hastack.model.config import Role as ResourceRole
from hastack.model.members import MemberRecord, NodeKind, NodeRecord
from hastack.model.status import LastOp, NodeReport, ResourceReport
from hastack.ops import edits
from hastack.ops.cluster import Actor, Cluster
from hastack.ops.configure import apply_config
from hastack.store import Keys
from hastack.store.config import read_config
from hastack.store.history import read_events
from hastack.store.memory import MemoryBackend, MemoryStore
from hastack.store.tls import load_credentials

CONFIG = """\
properties: {stonith-enabled: false}
nodes: [{node: n1}, {node: n2}, {node: n3}]
resources:
  - group: web
    resources:
      - {primitive: ip, agent: "ocf:heartbeat:Dummy"}
      - {primitive: app, agent: "ocf:heartbeat:Dummy"}
  - clone: cache-clone
    resource: {primitive: cache, agent: "ocf:heartbeat:Dummy"}
  - {primitive: solo, agent: "ocf:heartbeat:Dummy", meta: {target-role: Stopped}}
  - clone: proxy-clone
    resource:
      primitive: proxy
      agent: "hastack:proxy"
      params:
        config: |
          frontends: [{name: web, bind: ["127.0.0.1:18080"], backend: web}]
          backends: [{name: web, cluster: {resource: ip, port: 8080}}]
"""
KEYS = Keys("c")


@dataclass
class FakeAgent:
    view: LocalView = field(default_factory=lambda: LocalView("n1", member=True, cycle_limit=5.0))
    counters: AgentCounters = field(default_factory=AgentCounters)

    def local_view(self) -> LocalView:
        return self.view

    def events_dropped(self) -> int:
        return 0


@dataclass
class Setup:
    client: TestClient[Any, Any]
    store: MemoryStore
    agent: FakeAgent
    write: dict[str, str]
    read: dict[str, str]
    tokens: Path


async def _seed(store: MemoryStore) -> None:
    cluster = Cluster("c", store, KEYS, Actor("test", "test", "here"))
    await apply_config(cluster, parse_cluster_config(CONFIG, "seed.yaml"), expected=0)
    lease = await store.grant_lease(60)
    for name in ("n1", "n2", "n3"):
        await store.put(KEYS.node(name), NodeRecord(name, NodeKind.FULL).encode())
        member = MemberRecord(name, NodeKind.FULL, (f"10.0.0.{name[1]}",), joined_at=1.0)
        await store.put(KEYS.member(name), member.encode(), lease=lease.id)
    failed = LastOp("monitor", 7, "not running", at=time.time())
    report = NodeReport(
        "n2",
        updated=time.time(),
        resources={
            "ip": ResourceReport(role=ResourceRole.STARTED),
            "app": ResourceReport(fail_count=2, failed_op=failed),
        },
    )
    await store.put(KEYS.status("n2"), report.encode())
    for name in ("n1", "n3"):
        await store.put(KEYS.status(name), NodeReport(name, updated=time.time()).encode())


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    store = MemoryStore(MemoryBackend())
    await _seed(store)
    tokens = tmp_path / "tokens"
    write = add_token(tokens, "alice", Role.WRITE)
    read = add_token(tokens, "grafana", Role.READ)
    config = AgentConfig.model_validate(
        {
            "cluster": "c",
            "node": "n1",
            "etcd": {"endpoints": ["127.0.0.1:9"], "insecure": True},
            "api": {"listen": "127.0.0.1:7480", "tokens": str(tokens)},
        }
    )
    agent = FakeAgent()
    api = Api(config, agent, store, load_credentials(config.etcd), TokenFile(tokens))
    async with TestClient(TestServer(build_app(api))) as client:
        yield Setup(
            client,
            store,
            agent,
            {"Authorization": f"Bearer {write}"},
            {"Authorization": f"Bearer {read}"},
            tokens,
        )


async def stored(store: MemoryStore) -> tuple[ClusterConfig, int]:
    found = await read_config(store, KEYS)
    assert found.config is not None
    return found.config, found.revision


# ---- reads ----------------------------------------------------------------------------------


async def test_status_shows_nodes_resources_failures_and_why_stopped(setup: Setup) -> None:
    response = await setup.client.get("/api/v1/status", headers=setup.read)
    assert response.status == 200
    data = await response.json()
    assert [n["name"] for n in data["nodes"]] == ["n1", "n2", "n3"]
    assert all(n["online"] and not n["unclean"] for n in data["nodes"])
    assert any("app monitor on n2 returned 7 (not running)" in f for f in data["failed_actions"])
    assert data["fail_counts"] == ["app on n2: 2"]
    assert data["stopped"]["solo"] == ["disabled: target-role=Stopped on solo"]
    assert data["answered-by"]["node"] == "n1"
    [proxy] = data["components"]["proxies"]
    assert proxy["resource"] == "proxy"
    # the backend's servers as the proxy itself would take them from the cluster
    assert proxy["backends"] == [
        {
            "name": "web",
            "follows": "ip",
            "servers": [{"name": "n2", "address": "10.0.0.2:8080", "from": "cluster"}],
        }
    ]
    resources = await (await setup.client.get("/api/v1/resources", headers=setup.read)).json()
    assert {r["instance"] for r in resources["resources"]} == {"ip", "app"}
    config = await (await setup.client.get("/api/v1/config", headers=setup.read)).json()
    assert config["revision"] == (await stored(setup.store))[1]
    assert "group: web" in config["yaml"]
    events = await (await setup.client.get("/api/v1/events", headers=setup.read)).json()
    assert [e["kind"] for e in events["events"]] == ["config"]
    spec = await (await setup.client.get("/api/v1/openapi.json")).json()
    assert spec["paths"]["/api/v1/config"]["put"]["x-credential"] == "write"


async def test_simulate_changes_nothing_and_names_unknown_nodes(setup: Setup) -> None:
    before = await stored(setup.store)
    response = await setup.client.post(
        "/api/v1/simulate", headers=setup.read, json={"node-fail": ["n2"]}
    )
    assert response.status == 200, await response.text()
    data = await response.json()
    assert "Transition Summary" in data["summary"] or data["actions"]
    assert await stored(setup.store) == before
    bad = await setup.client.post("/api/v1/simulate", headers=setup.read, json={"standby": ["n9"]})
    assert bad.status == 400
    assert "no node 'n9'" in (await bad.json())["error"]


# ---- actions: the operations layer's own change ----------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "edit"),
    [
        ("/api/v1/nodes/n2/standby", {}, edits.set_node_flag("n2", "standby", True)),
        ("/api/v1/nodes/n3/maintenance", {}, edits.set_node_flag("n3", "maintenance", True)),
        ("/api/v1/resources/web/move", {"node": "n3"}, edits.move("web", "n3")),
        ("/api/v1/resources/cache-clone/ban", {"node": "n1"}, edits.ban("cache-clone", "n1")),
        ("/api/v1/resources/app/disable", None, edits.set_target_role("app", ResourceRole.STOPPED)),
        ("/api/v1/resources/solo/enable", {}, edits.set_target_role("solo", None)),
    ],
)
async def test_each_action_makes_the_edit_the_cli_makes(
    setup: Setup, path: str, body: dict[str, str] | None, edit: edits.Edit
) -> None:
    before, revision = await stored(setup.store)
    response = await setup.client.post(path, headers=setup.write, json=body)
    assert response.status == 200, await response.text()
    after, new_revision = await stored(setup.store)
    assert new_revision > revision
    assert after == edit(before).config
    # and the change is in the history, with who made it
    history = await read_events(setup.store, KEYS, limit=1)
    [event] = history.events
    assert event.revision == new_revision
    assert event.data["by"] == "alice"
    assert "via api on n1" in event.text


async def test_cleanup_is_a_request_and_clear_removes_move_and_ban(setup: Setup) -> None:
    response = await setup.client.post(
        "/api/v1/resources/app/cleanup", headers=setup.write, json={"node": "n2"}
    )
    assert response.status == 200
    requests = await setup.store.get_prefix(KEYS.cleanup_requests)
    assert len(requests.kvs) == 1
    assert json.loads(requests.kvs[0].value) == {"resource": "app", "node": "n2"}
    await setup.client.post("/api/v1/resources/web/move", headers=setup.write, json={"node": "n3"})
    cleared = await setup.client.post("/api/v1/resources/web/clear", headers=setup.write)
    assert cleared.status == 200
    config, _ = await stored(setup.store)
    assert not [c for c in config.constraints if "web" in getattr(c, "location", "")]


async def test_config_is_applied_by_cas_on_the_revision_given(setup: Setup) -> None:
    _config, revision = await stored(setup.store)
    text = CONFIG.replace("{node: n3}]", "{node: n3, standby: true}]")
    ok = await setup.client.put(
        "/api/v1/config", headers=setup.write, json={"config": text, "revision": revision}
    )
    assert ok.status == 200, await ok.text()
    new_config, new_revision = await stored(setup.store)
    assert next(n for n in new_config.nodes if n.node == "n3").standby
    # the same revision again is stale now: refused, nothing changed
    stale = await setup.client.put(
        "/api/v1/config", headers=setup.write, json={"config": CONFIG, "revision": revision}
    )
    assert stale.status == 409
    assert "changed since it was read" in (await stale.json())["error"]
    assert await stored(setup.store) == (new_config, new_revision)


# ---- bad input --------------------------------------------------------------------------------


BAD = [
    ("GET", "/api/v1/nothing-here", None, 404, "no such path: /api/v1/nothing-here"),
    ("DELETE", "/api/v1/status", None, 405, "DELETE is not allowed"),
    ("POST", "/api/v1/nodes/n9/standby", {}, 404, "no node 'n9'"),
    ("POST", "/api/v1/nodes/n2/reboot", {}, 404, "no node action 'reboot'"),
    ("POST", "/api/v1/resources/nope/disable", {}, 404, "no resource 'nope'"),
    ("POST", "/api/v1/resources/web/move", {}, 400, 'move needs {"node": NAME}'),
    ("POST", "/api/v1/resources/web/move", {"node": "n2", "x": 1}, 400, "takes no field(s) x"),
    ("POST", "/api/v1/resources/web/restart", {"timeout": -1}, 400, "timeout must be"),
    ("POST", "/api/v1/resources/web/ban", {"node": "n7"}, 404, "no node 'n7' in this"),
    ("PUT", "/api/v1/config", {"config": CONFIG}, 400, '"revision": N'),
    ("PUT", "/api/v1/config", {"config": 7, "revision": 1}, 400, "YAML text or an object"),
    ("PUT", "/api/v1/config", {"config": "resources: [{primitive: x}]", "revision": 1}, 422,
     "configuration refused"),
    ("GET", "/api/v1/events?after=soon", None, 400, "after must be a whole number"),
    ("GET", "/api/v1/events?kind=gossip", None, 400, "unknown event kind 'gossip'"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body", "status", "says"), BAD)
async def test_bad_input_is_refused_with_its_reason_and_changes_nothing(
    setup: Setup, method: str, path: str, body: dict[str, Any] | None, status: int, says: str
) -> None:
    before = await stored(setup.store)
    revision = setup.store.backend.revision
    response = await setup.client.request(method, path, headers=setup.write, json=body)
    assert response.status == status, await response.text()
    data = await response.json()
    assert data["status"] == status
    assert says in data["error"]
    assert await stored(setup.store) == before
    assert setup.store.backend.revision == revision


async def test_bodies_that_are_not_json_objects_are_refused(setup: Setup) -> None:
    for raw in (b"{not json", b"[1, 2]", b"\xff\xfe"):
        response = await setup.client.put("/api/v1/config", headers=setup.write, data=raw)
        assert response.status == 400
        assert "JSON" in (await response.json())["error"]
    big = await setup.client.put("/api/v1/config", headers=setup.write, data=b" " * (2 << 20))
    assert big.status == 413


async def test_a_configuration_with_problems_says_each_with_its_path(setup: Setup) -> None:
    _, revision = await stored(setup.store)
    text = "resources:\n  - {primitive: a, agent: 'ocf:heartbeat:Dummy', meta: {bogus: 1}}\n"
    response = await setup.client.put(
        "/api/v1/config", headers=setup.write, json={"config": text, "revision": revision}
    )
    assert response.status == 422
    problems = (await response.json())["problems"]
    assert any("resources[0].meta" in p and "bogus" in p for p in problems), problems


# ---- credentials ------------------------------------------------------------------------------


async def test_writes_need_a_write_token_and_reads_a_token_unless_open(setup: Setup) -> None:
    before = await stored(setup.store)
    path = "/api/v1/nodes/n2/standby"
    none = await setup.client.post(path)
    assert none.status == 401
    assert none.headers["WWW-Authenticate"] == "Bearer"
    assert "a token is needed" in (await none.json())["error"]
    wrong = await setup.client.post(path, headers={"Authorization": "Bearer hst_nope"})
    assert wrong.status == 401
    basic = await setup.client.post(path, headers={"Authorization": "Basic YTpi"})
    assert basic.status == 401
    reader = await setup.client.post(path, headers=setup.read)
    assert reader.status == 403
    assert "may only read" in (await reader.json())["error"]
    assert await stored(setup.store) == before
    assert (await setup.client.get("/api/v1/status")).status == 401
    assert (await setup.client.get("/metrics")).status == 401
    # health is for load balancers: no credential
    assert (await setup.client.get("/health")).status == 200


async def test_tokens_are_read_again_when_the_file_changes(setup: Setup) -> None:
    assert (await setup.client.get("/api/v1/status", headers=setup.read)).status == 200
    lines = setup.tokens.read_text().splitlines()
    setup.tokens.write_text("\n".join(line for line in lines if "grafana" not in line) + "\n")
    assert (await setup.client.get("/api/v1/status", headers=setup.read)).status == 401


# ---- health and metrics -------------------------------------------------------------------


async def test_health_follows_the_agents_own_view(setup: Setup) -> None:
    client, agent = setup.client, setup.agent
    assert (await client.get("/health")).status == 200
    assert (await client.get("/dc")).status == 503
    agent.view = LocalView("n1", member=True, dc=True, epoch=7, cycle_limit=5.0)
    dc = await client.get("/dc")
    assert dc.status == 200
    assert (await dc.json())["epoch"] == 7
    agent.view = LocalView("n1", member=True, standby=True, cycle_limit=5.0)
    standby = await client.get("/health")
    assert standby.status == 503
    assert (await standby.json())["reasons"] == ["in standby"]
    agent.view = LocalView("n1", member=False, cycle_limit=5.0)
    assert (await client.get("/health")).status == 503
    agent.view = LocalView("n1", member=True, cycle_stalled_for=9.0, cycle_limit=5.0)
    assert (await client.get("/liveness")).status == 503


async def test_metrics_are_prometheus_text(setup: Setup) -> None:
    setup.agent.counters.renewals.observe(0.004)
    setup.agent.counters.renewals.observe(0.3)
    response = await setup.client.get("/metrics", headers=setup.read)
    assert response.status == 200
    text = await response.text()
    assert 'hastack_nodes{state="online"} 3.0' in text
    assert 'hastack_resources{role="started"} 1.0' in text
    assert "hastack_failed_actions 1.0" in text
    assert 'hastack_lease_renewal_seconds_bucket{le="0.005"} 1.0' in text
    assert 'hastack_lease_renewal_seconds_bucket{le="+Inf"} 2.0' in text
    assert "hastack_lease_renewal_seconds_count 2.0" in text
    assert "# TYPE hastack_dc_changes_total counter" in text
    assert "hastack_scheduler_seconds_count 0.0" in text


async def test_the_dashboard_is_one_page_with_nothing_from_elsewhere(setup: Setup) -> None:
    response = await setup.client.get("/")
    assert response.status == 200
    page = await response.text()
    assert "/api/v1/status" in page
    assert "http://" not in page
    assert "https://" not in page
    assert "<script src" not in page


def test_the_api_thread_answers_even_when_the_store_does_not(tmp_path: Path) -> None:
    """Its own thread and loop: health from the agent's view at once; reads say the store
    cannot be reached (503) within 2 s instead of hanging; stopping it frees the port."""
    import socket
    import urllib.error
    import urllib.request

    from hastack.api.server import ApiThread

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = AgentConfig.model_validate(
        {
            "cluster": "c",
            "node": "n1",
            "etcd": {"endpoints": ["127.0.0.1:1"], "insecure": True},  # nothing listens there
            "api": {"listen": f"127.0.0.1:{port}", "open-reads": True},
        }
    )
    thread = ApiThread(config, FakeAgent())
    thread.start()
    try:
        assert thread.bound.wait(5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            assert response.status == 200
        asked = time.monotonic()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/status", timeout=5)
        assert time.monotonic() - asked < 2.0
        assert refused.value.code == 503
        assert "cannot read the store" in json.loads(refused.value.read())["error"]
        write = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/nodes/n1/standby", data=b"{}", method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as unauthorized:
            urllib.request.urlopen(write, timeout=2)
        assert unauthorized.value.code == 401
    finally:
        thread.stop()
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
