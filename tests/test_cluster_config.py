"""The cluster configuration model: what is accepted, and how refusals name their place."""

from __future__ import annotations

import pytest

from hastack.errors import ConfigError
from hastack.model.config import (
    Clone,
    Discovery,
    Group,
    Location,
    OrderKind,
    Primitive,
    Role,
    parse_cluster_config,
)
from hastack.model.config_text import config_from_json, config_to_json, config_to_yaml
from hastack.model.scores import INFINITY, add_scores, parse_score

FULL = """\
properties:
  stonith-enabled: true
  no-quorum-policy: freeze
resource-defaults: {resource-stickiness: 100, migration-threshold: 3}
op-defaults: {timeout: 30s}
nodes:
  - {node: n1, attributes: {rack: r1}}
  - {node: n2, standby: true}
resources:
  - primitive: vip
    agent: ocf:heartbeat:IPaddr2
    params: {ip: 10.0.0.10, cidr_netmask: 24}
    ops:
      - {name: monitor, interval: 10s, timeout: 20s, on-fail: restart}
  - group: web
    resources:
      - {primitive: fs, agent: "hastack:service"}
      - {primitive: httpd, agent: "systemd:httpd"}
  - clone: galera-clone
    promotable: true
    meta: {promoted-max: 1, master-node-max: 1, interleave: true}
    resource: {primitive: galera, agent: "hastack:galera"}
constraints:
  - {location: vip-pref, resource: vip, node: n1, score: INFINITY}
  - {colocation: vip-with-writer, resource: vip, with: galera-clone, with-role: Master}
  - order: writer-then-vip
    first: galera-clone
    first-action: promote
    then: vip
    then-action: start
  - order: chain
    sets: [{resources: [fs, httpd]}, {resources: [vip]}]
  - location: by-rack
    resource: web
    rules:
      - score: -INFINITY
        boolean-op: or
        expressions:
          - {attribute: rack, op: ne, value: r1}
          - {attribute: rack, op: not_defined}
"""


def test_full_configuration() -> None:
    config = parse_cluster_config(FULL, "c.yaml")
    assert [r.id for r in config.walk()] == ["vip", "web", "fs", "httpd", "galera-clone", "galera"]
    vip = config.find("vip")
    assert isinstance(vip, Primitive)
    assert str(vip.agent) == "ocf:heartbeat:IPaddr2"
    assert vip.params == {"ip": "10.0.0.10", "cidr_netmask": "24"}
    assert vip.ops[0].interval == 10.0
    galera = config.find("galera-clone")
    assert isinstance(galera, Clone)
    assert galera.promotable
    assert galera.meta.promoted_node_max == 1  # from the legacy master-node-max
    assert isinstance(config.find("web"), Group)
    colocation = config.constraints[1]
    assert getattr(colocation, "with_role", None) is Role.PROMOTED  # legacy Master
    order = config.constraints[2]
    assert getattr(order, "kind", None) is OrderKind.MANDATORY
    assert config.resource_defaults.resource_stickiness == 100


def test_round_trips_through_yaml_and_json() -> None:
    config = parse_cluster_config(FULL, "c.yaml")
    assert parse_cluster_config(config_to_yaml(config), "again") == config
    assert config_from_json(config_to_json(config)) == config


def refused(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_cluster_config(text, "c.yaml")
    return caught.value.problems


def test_exact_paths_and_lines() -> None:
    text = FULL.replace("interval: 10s", "interval: soon").replace(
        "{timeout: 30s}", "{timeout: 30s, retries: 3}"
    )
    problems = refused(text)
    assert "c.yaml:5: op-defaults.retries: unknown key (allowed: timeout)" in problems
    assert (
        "c.yaml:14: resources[0].ops[0].interval: not a duration: 'soon' "
        "(use e.g. 20s, 500ms, 2min)" in problems
    )


def test_references_and_ids() -> None:
    text = FULL.replace("resource: vip, node: n1", "resource: vipp, node: n3").replace(
        "primitive: httpd", "primitive: fs"
    )
    problems = "\n".join(refused(text))
    assert "constraints[0].resource: no resource named 'vipp'" in problems
    assert "constraints[0].node: no node named 'n3' (list it under nodes)" in problems
    assert "resources[1]: id 'fs' is already used by resources[1]" in problems


def test_roles_need_a_promotable_clone() -> None:
    text = FULL.replace("    promotable: true\n", "")
    problems = "\n".join(refused(text))
    assert (
        "with-role: role Promoted needs a promotable clone; 'galera-clone' is not one" in problems
    )
    assert "promoted-max needs promotable: true" in problems


def test_clone_meta_belongs_on_clones() -> None:
    text = FULL.replace("params: {ip: 10.0.0.10, cidr_netmask: 24}", "meta: {clone-max: 2}")
    assert any("clone-max only apply to clones" in p for p in refused(text))


@pytest.mark.parametrize(
    ("snippet", "why"),
    [
        ("agent: ocf:IPaddr2", "an OCF agent is ocf:PROVIDER:TYPE"),
        ("agent: nope:vip", "unknown agent class 'nope'"),
        ("score: lots", "not a score"),
    ],
)
def test_bad_values(snippet: str, why: str) -> None:
    text = FULL
    if snippet.startswith("agent"):
        text = FULL.replace("agent: ocf:heartbeat:IPaddr2", snippet)
    else:
        text = FULL.replace("score: INFINITY", snippet)
    assert any(why in p for p in refused(text)), refused(text)


def test_location_needs_node_and_score_or_rules() -> None:
    problems = refused(FULL.replace("node: n1, score: INFINITY", "node: n1"))
    assert any("needs node and score (or rules)" in p for p in problems)


def test_resource_discovery_on_node_and_rule_locations() -> None:
    text = FULL.replace(
        "node: n1, score: INFINITY}", "node: n1, score: INFINITY, resource-discovery: exclusive}"
    ).replace("    resource: web\n", "    resource: web\n    resource-discovery: never\n")
    config = parse_cluster_config(text, "c.yaml")
    by_node, by_rule = config.constraints[0], config.constraints[4]
    assert isinstance(by_node, Location)
    assert isinstance(by_rule, Location)
    assert by_node.resource_discovery is Discovery.EXCLUSIVE
    assert by_rule.resource_discovery is Discovery.NEVER
    assert parse_cluster_config(config_to_yaml(config), "again") == config
    plain = parse_cluster_config(FULL, "c.yaml").constraints[0]
    assert isinstance(plain, Location)
    assert plain.resource_discovery is Discovery.ALWAYS
    assert "resource-discovery" not in config_to_yaml(parse_cluster_config(FULL, "c.yaml"))


def test_resource_discovery_values() -> None:
    problems = refused(FULL.replace("score: INFINITY}", "score: INFINITY, resource-discovery: no}"))
    assert any(
        "constraints[0].resource-discovery" in p and "'always', 'never' or 'exclusive'" in p
        for p in problems
    ), problems
    # A location for the Promoted role only weighs promotion: discovery cannot apply there.
    promoted = FULL.replace(
        "- {location: vip-pref, resource: vip, node: n1, score: INFINITY}",
        "- {location: writer-pref, resource: galera-clone, node: n1, score: 10, role: Promoted,"
        " resource-discovery: never}",
    )
    assert any(
        "resource-discovery never needs a location for every role" in p for p in refused(promoted)
    )


def test_score_arithmetic() -> None:
    assert add_scores(INFINITY, -INFINITY) == -INFINITY
    assert add_scores(INFINITY, 5) == INFINITY
    assert add_scores(999_999, 5) == INFINITY
    assert add_scores(-999_999, -5) == -INFINITY
    assert add_scores(3, 4) == 7
    assert parse_score("-INFINITY") == -INFINITY
    assert parse_score("+INFINITY") == INFINITY
    assert parse_score(5_000_000) == INFINITY
