"""Agent configuration: accepted when sound, refused with the place and the reason otherwise."""

from __future__ import annotations

import pytest

from hastack.errors import ConfigError
from hastack.model.agent_config import parse_agent_config, parse_client_config
from hastack.model.durations import format_duration, parse_duration
from hastack.model.members import NodeKind

GOOD = """\
cluster: prod
node: ctl-1
kind: full
addresses: [10.0.0.11]
attributes:
  rack: r1
etcd:
  endpoints:
    - http://10.0.0.11:2379
    - 10.0.0.12:2379
  election-timeout: 500ms
  insecure: true
timings:
  lease-ttl: 4s
  renew-interval: 500ms
  store-timeout: 1s
"""


def test_good_config() -> None:
    config = parse_agent_config(GOOD, "agent.yaml")
    assert config.node == "ctl-1"
    assert config.kind is NodeKind.FULL
    assert config.etcd.endpoints == ["10.0.0.11:2379", "10.0.0.12:2379"]
    assert config.timings.lease_ttl == 4.0
    assert config.timings.loss_after == 2.5
    assert config.timings.self_fence_budget == 1.5
    assert config.attributes == {"rack": "r1"}


def test_defaults_are_safe() -> None:
    text = "cluster: c\nnode: n\netcd: {endpoints: [a:1], insecure: true}\n"
    config = parse_agent_config(text, "a.yaml")
    t = config.timings
    assert t.renew_interval + 2 * t.store_timeout < t.lease_ttl


def refused(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_agent_config(text, "agent.yaml")
    return caught.value.problems


def test_unsafe_timings_refused_with_the_inequality() -> None:
    text = GOOD.replace("store-timeout: 1s", "store-timeout: 2s")
    [problem] = refused(text)
    assert problem.startswith("agent.yaml:13: timings: unsafe timings")
    assert "renew-interval + 2 × store-timeout must be less than lease-ttl" in problem
    assert "0.5s + 2 × 2s = 4.5s, lease-ttl 4s" in problem


def test_timings_must_ride_out_an_etcd_leader_change() -> None:
    text = GOOD.replace("election-timeout: 500ms", "election-timeout: 1s")
    [problem] = refused(text)
    assert problem.startswith("agent.yaml:1: (top level): timings cannot ride out an etcd")
    assert "lost 2.5s after its last good renewal" in problem
    assert "give store-timeout ≥ 1.5s" in problem
    assert "or election-timeout ≤ 0.6s" in problem


def test_fractional_or_tiny_ttl_refused() -> None:
    assert (
        "whole number of seconds" in refused(GOOD.replace("lease-ttl: 4s", "lease-ttl: 1500ms"))[0]
    )
    assert "at least 2s" in refused(GOOD.replace("lease-ttl: 4s", "lease-ttl: 1s"))[0]


def test_every_problem_named_with_line_and_path() -> None:
    text = (
        GOOD.replace("node: ctl-1", "node: 'ctl 1'")
        .replace("500ms", "soon")
        .replace("rack: r1", "rack: r1\n  zone: [a]")
    )
    text += "colour: blue\n"
    problems = refused(text)
    joined = "\n".join(problems)
    assert "agent.yaml:2: node: not a valid name: 'ctl 1'" in joined
    assert "agent.yaml:16: timings.renew-interval: not a duration: 'soon'" in joined
    assert "agent.yaml:7: attributes.zone: Input should be a valid string" in joined
    assert (
        "agent.yaml:18: colour: unknown key (allowed: addresses, api, attributes, cluster,"
        in joined
    )
    assert "agent.yaml:12: etcd.election-timeout: not a duration: 'soon'" in joined
    assert len(problems) == 5


def test_missing_keys() -> None:
    problems = refused("cluster: c\n")
    assert "agent.yaml:1: node: required but missing" in problems
    assert "agent.yaml:1: etcd: required but missing" in problems


def test_bad_endpoint_and_kind() -> None:
    problems = refused(
        GOOD.replace("10.0.0.12:2379", "10.0.0.12").replace("kind: full", "kind: big")
    )
    joined = "\n".join(problems)
    assert "agent.yaml:10: etcd.endpoints[1]: not an etcd endpoint" in joined
    assert "agent.yaml:3: kind: Input should be 'full' or 'remote'" in joined


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "the document is empty"),
        ("cluster: [unclosed\n", "not valid YAML"),
        ("- a\n- b\n", "Input should be a valid dictionary"),
        ("cluster: a\ncluster: b\n", "key 'cluster' is given twice"),
    ],
)
def test_malformed_documents(text: str, why: str) -> None:
    problems = refused(text)
    assert any(why in p for p in problems), problems


def test_client_config_from_agent_config() -> None:
    client = parse_client_config(GOOD, "agent.yaml")
    assert client.cluster == "prod"
    assert client.etcd.endpoints[0] == "10.0.0.11:2379"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), (90, 90), ("1.5s", 1.5), ("500ms", 0.5), ("2min", 120), ("1h", 3600), ("PT5S", 5)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-1", "5 parsecs", True, None, "P", "PT"])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_format_duration_round_trips() -> None:
    for seconds in (0, 0.5, 1, 1.5, 60, 90, 3600):
        assert parse_duration(format_duration(seconds)) == seconds


def test_watchdog_reset_is_a_command_of_a_process_watchdog() -> None:
    text = GOOD + "watchdog: {kind: process, reset: [power-off-me, --now]}\n"
    assert parse_agent_config(text, "a.yaml").watchdog.reset == ["power-off-me", "--now"]
    default = parse_agent_config(GOOD + "watchdog: {kind: process}\n", "a.yaml").watchdog
    assert default.reset == []  # the documented default reset
    [problem] = refused(GOOD + "watchdog: {kind: device, reset: [poweroff]}\n")
    assert "reset: is what a process watchdog runs" in problem
    [problem] = refused(GOOD + "watchdog: {kind: process, reset: ['']}\n")
    assert "watchdog.reset[0]: String should have at least 1 character" in problem
