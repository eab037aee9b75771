"""The `assignments:` section: what is accepted, and how a refusal names its place."""

from __future__ import annotations

import pytest

from hastack.errors import ConfigError
from hastack.model.config import parse_cluster_config

BASE = """\
nodes: [{node: n1}, {node: n2}, {node: n3}]
resources:
  - {primitive: vip, agent: "hastack:vip", params: {ip: 10.0.0.1}}
  - group: g
    resources: [{primitive: g1, agent: "hastack:service", params: {command: x}}]
  - clone: router-clone
    resource:
      primitive: router
      agent: "hastack:service"
      params: {command: "sleep 100", assign-ack: "true"}
  - clone: dhcp-clone
    meta: {clone-max: 2}
    resource: {primitive: dhcp, agent: "ocf:heartbeat:Dummy"}
  - clone: bare-clone
    resource: {primitive: bare, agent: "hastack:service", params: {command: x}}
constraints:
  - {location: no-dhcp-n3, resource: dhcp-clone, node: n3, score: -INFINITY}
assignments:
"""


def refused(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_cluster_config(BASE + text, "c.yaml")
    return caught.value.problems


def test_an_assignment_is_accepted() -> None:
    config = parse_cluster_config(
        BASE
        + "  - {assignment: routers, clone: router-clone, replicas: 2, entities: [r1, r2],\n"
        + "     weights: {n1: 2}, capacity: {n3: 5}}\n",
        "c.yaml",
    )
    a = config.assignments[0]
    assert (a.assignment, a.clone, a.replicas, a.entities) == (
        "routers",
        "router-clone",
        2,
        ["r1", "r2"],
    )
    assert a.weights == {"n1": 2.0}
    assert a.capacity == {"n3": 5}


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (
            "  - {assignment: a, clone: vip}",
            "c.yaml:19: assignments[0].clone: 'vip' is a primitive, not a clone: entities are "
            "assigned to the instances of a clone",
        ),
        (
            "  - {assignment: a, clone: g}",
            "c.yaml:19: assignments[0].clone: 'g' is a group, not a clone",
        ),
        (
            "  - {assignment: a, clone: nothing}",
            "c.yaml:19: assignments[0].clone: no resource named 'nothing'",
        ),
        (
            "  - {assignment: a, clone: dhcp-clone, replicas: 3}",
            "c.yaml:19: assignments[0].replicas: replicas 3 > clone-max 2 of 'dhcp-clone'",
        ),
        (
            "  - {assignment: a, clone: router-clone, replicas: 4}",
            "c.yaml:19: assignments[0].replicas: ",
        ),
        (
            "  - {assignment: a, clone: router-clone, entities: [x, y, x]}",
            "c.yaml:19: assignments[0].entities[2]: entity 'x' is listed twice",
        ),
        (
            "  - {assignment: a, clone: router-clone, entities: ['bad name']}",
            "c.yaml:19: assignments[0].entities[0]: not a valid name",
        ),
        (
            "  - {assignment: a, clone: router-clone, weights: {n9: 1}}",
            "c.yaml:19: assignments[0].weights.n9: no node named 'n9' (list it under nodes)",
        ),
        (
            "  - {assignment: a, clone: router-clone, weights: {n1: 0}}",
            "c.yaml:19: assignments[0].weights.n1: ",
        ),
        (
            "  - {assignment: a, clone: bare-clone}",
            "c.yaml:19: assignments[0].clone: 'bare-clone' runs hastack:service without assign-cmd",
        ),
    ],
)
def test_bad_assignments_are_refused_with_path_and_reason(line: str, problem: str) -> None:
    problems = refused(line + "\n")
    assert any(p.startswith(problem) for p in problems), problems


def test_replicas_beyond_the_nodes_that_can_run_the_clone() -> None:
    # Three nodes listed, one of them banned from the clone: two can run it.
    text = BASE.replace("meta: {clone-max: 2}\n    ", "")
    with pytest.raises(ConfigError) as caught:
        parse_cluster_config(
            text + "  - {assignment: a, clone: dhcp-clone, replicas: 3}\n", "c.yaml"
        )
    assert any(
        "replicas 3 > 2 node(s) that can run 'dhcp-clone' (1 banned)" in p
        for p in caught.value.problems
    ), caught.value.problems


def test_names_are_unique() -> None:
    problems = refused(
        "  - {assignment: a, clone: router-clone}\n  - {assignment: a, clone: router-clone}\n"
    )
    assert any("assignments[1].assignment: 'a' is defined twice" in p for p in problems), problems
