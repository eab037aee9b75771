"""`hastack:proxy` as a cluster resource: configured inside the cluster configuration, run by
an agent, balancing over the nodes where a clone runs, and following the cluster when one of
them is put in standby. Three real agents on a real etcd; everything on loopback."""

from __future__ import annotations

import json
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

from conftest import ClusterFactory
from hastack.executor.check import agent_problems
from hastack.model.config import parse_cluster_config
from hastack.proxy.dataplane import listening_socket
from helpers import hastack_cli, wait_until
from test_proxy_support import free_port

pytestmark = pytest.mark.timeout(120)


def cluster_yaml(proxy_port: int, admin_port: int, api_port: int, backend: str = "api") -> str:
    proxy = textwrap.indent(
        textwrap.dedent(
            f"""\
            admin: {{bind: "127.0.0.1:{admin_port}", open-reads: true}}
            frontends:
              - {{name: web, bind: ["127.0.0.1:{proxy_port}"], backend: {backend}}}
            backends:
              - name: api
                balance: roundrobin
                cluster: {{resource: api, port: {api_port}}}
                check: {{type: http, http: {{path: /node}}, interval: 30s}}
            """
        ),
        " " * 12,
    )
    return f"""\
properties: {{stonith-enabled: false}}
op-defaults: {{timeout: 15s}}
resources:
  - clone: api-clone
    resource:
      primitive: api
      agent: hastack:service
      params:
        # each instance serves its node's name on its node's own address
        command: >-
          d=$(mktemp -d) && echo "$HASTACK_NODE" > "$d/node" &&
          exec {sys.executable} -m http.server {api_port}
          --bind "$HASTACK_NODE_ADDRESS" --directory "$d"
      ops: [{{name: monitor, interval: 1s}}]
  - primitive: proxy
    agent: hastack:proxy
    params:
      config: |
{proxy}
    ops: [{{name: monitor, interval: 1s}}]
constraints:
  - {{order: api-then-proxy, first: api-clone, then: proxy}}
"""


def answers(port: int, count: int) -> list[str]:
    out = []
    for _ in range(count):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/node", timeout=2) as response:
            out.append(response.read().decode().strip())
    return out


def test_proxy_resource_balances_over_the_clone_and_follows_standby(
    local_cluster: ClusterFactory, tmp_path: Path
) -> None:
    lc = local_cluster(3)
    proxy_port, admin_port, api_port = free_port(), free_port(), free_port()
    path = tmp_path / "cluster.yaml"
    path.write_text(cluster_yaml(proxy_port, admin_port, api_port))
    applied = hastack_cli(lc, "config", "apply", str(path), "--yes")
    assert applied.returncode == 0, applied.stderr

    def every_node_answers() -> bool:
        try:
            return set(answers(proxy_port, 6)) == {"n1", "n2", "n3"}
        except OSError:
            return False

    wait_until(every_node_answers, 30, 0.3)
    # The proxy got its cluster link from its agent: the servers are the members' addresses.
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/stats.json", timeout=2) as r:
        stats = json.load(r)
    assert "api" in json.dumps(stats)

    standby = hastack_cli(lc, "node", "standby", "n3")
    assert standby.returncode == 0, standby.stderr

    def n3_gone() -> bool:
        try:
            return set(answers(proxy_port, 6)) == {"n1", "n2"}
        except OSError:
            return False

    # (active checks run only every 30 s: what takes n3 out is the cluster's state)
    wait_until(n3_gone, 20, 0.2)
    # and no request fails while it stays out
    assert set(answers(proxy_port, 20)) == {"n1", "n2"}


def test_a_broken_proxy_configuration_is_refused_before_storing(
    local_cluster: ClusterFactory, tmp_path: Path
) -> None:
    text = cluster_yaml(1, 2, 3, backend="nowhere")
    config = parse_cluster_config(text, "cluster.yaml")
    problems = agent_problems(config)
    assert [(loc, msg) for loc, msg in problems if "no backend 'nowhere'" in msg], problems
    lc = local_cluster(1, agents=False)
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = hastack_cli(lc, "config", "apply", str(path), "--yes")
    assert result.returncode == 2
    assert "resources[1].params.config:" in result.stderr
    assert "no backend 'nowhere'" in result.stderr
    assert "Traceback" not in result.stderr


def test_freebind_listens_on_an_address_not_yet_here() -> None:
    # A documentation address (TEST-NET-1) that no interface has: only bound, never sent to.
    address = f"192.0.2.77:{free_port()}"
    with pytest.raises(OSError, match="assign requested address"):
        listening_socket(address, reuse_port=False, freebind=False).close()
    sock = listening_socket(address, reuse_port=False, freebind=True)
    try:
        assert sock.getsockname() == ("192.0.2.77", int(address.rsplit(":", 1)[1]))
    finally:
        sock.close()
