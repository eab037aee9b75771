"""Clone notifications end to end: three real agents on a real etcd run an OCF agent that
records every start, stop and notify with Pacemaker's notify variables, and the order in which
they happened. Plus the store encodings that carry notifications."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import ClusterFactory
from hastack.model.config import Role
from hastack.model.status import NodeReport, decode_status
from hastack.model.targets import NodeTarget, NotifyRequest, decode_target
from helpers import hastack_cli, wait_until

TEST_AGENTS = str(Path(__file__).parent / "ocf" / "resource.d")

pytestmark = pytest.mark.timeout(120)


def test_targets_and_reports_carry_notifications() -> None:
    request = NotifyRequest("7.2.5", "rmq:1", {"notify_type": "pre", "notify_operation": "stop"})
    target = NodeTarget(7, 3, {"rmq:1": Role.STARTED}, frozenset(), (request,))
    assert decode_target(target.encode()) == target
    assert not target.same_work(NodeTarget(7, 3, {"rmq:1": Role.STARTED}))
    report = NodeReport("n1", epoch=7, notified=("7.2.5", "7.2.9"))
    assert decode_status("n1", report.encode()).notified == ("7.2.5", "7.2.9")
    with pytest.raises(ValueError, match="notify\\[0\\] needs 'key'"):
        decode_target(b'{"epoch": 1, "notify": [{"instance": "x", "variables": {}}]}')
    with pytest.raises(ValueError, match="'notified' must be a list of strings"):
        decode_status("n1", b'{"node": "n1", "notified": [1]}')


def config(log: Path) -> str:
    return f"""\
properties: {{stonith-enabled: false}}
op-defaults: {{timeout: 10s}}
resources:
  - clone: notifier-clone
    meta: {{notify: true}}
    resource:
      primitive: notifier
      agent: ocf:hastack-test:notifier
      params: {{log: "{log}"}}
      ops: [{{name: monitor, interval: 2s}}]
"""


def records(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def test_clone_notifications_reach_every_instance_in_order(
    local_cluster: ClusterFactory, tmp_path: Path
) -> None:
    lc = local_cluster(3, agent_settings={"ocf-agent-dirs": [TEST_AGENTS]})
    log = tmp_path / "notify.jsonl"
    path = tmp_path / "cluster.yaml"
    path.write_text(config(log))
    applied = hastack_cli(lc, "config", "apply", str(path), "--yes")
    assert applied.returncode == 0, applied.stderr

    # Three instances start; whoever started before the others heard about the later ones.
    def post_start_everywhere() -> bool:
        posts = [r for r in records(log) if (r["type"], r["operation"]) == ("post", "start")]
        return {r["node"] for r in posts} == {"n1", "n2", "n3"}

    wait_until(post_start_everywhere, 30, 0.2)
    every = records(log)
    starts = [r for r in every if r["action"] == "start"]
    assert sorted(r["node"] for r in starts) == ["n1", "n2", "n3"]
    posts = [r for r in every if (r["type"], r["operation"]) == ("post", "start")]
    # The DC may start them in one transition or several (a node that finishes probing
    # later makes it plan again). Whoever hears a post-start runs: it was active before or
    # has just started; whoever hears a pre-start is not among those starting.
    for r in posts:
        assert r["node"] in r["start_uname"].split() + r["active_uname"].split(), r
    for r in every:
        if (r["type"], r["operation"]) == ("pre", "start"):
            assert r["node"] not in r["start_uname"].split(), r
    mark = len(every)

    # Standby n3: everyone hears pre-stop before n3 stops, only n1 and n2 hear post-stop.
    standby = hastack_cli(lc, "node", "standby", "n3")
    assert standby.returncode == 0, standby.stderr

    def post_stop_seen() -> list[dict[str, Any]] | None:
        later = records(log)[mark:]
        posts = {r["node"] for r in later if (r["type"], r["operation"]) == ("post", "stop")}
        return later if posts == {"n1", "n2"} else None

    later = wait_until(post_stop_seen, 30, 0.2)
    stop_at = next(i for i, r in enumerate(later) if r["action"] == "stop")
    assert later[stop_at]["node"] == "n3"
    pre = [i for i, r in enumerate(later) if (r["type"], r["operation"]) == ("pre", "stop")]
    post = [i for i, r in enumerate(later) if (r["type"], r["operation"]) == ("post", "stop")]
    assert {later[i]["node"] for i in pre} == {"n1", "n2", "n3"}
    assert max(pre) < stop_at < min(post), later
    for i in pre + post:
        assert later[i]["stop_uname"] == "n3", later[i]
        assert later[i]["available_uname"].split() == ["n1", "n2"], later[i]
    for i in pre:
        assert sorted(later[i]["active_uname"].split()) == ["n1", "n2", "n3"], later[i]
