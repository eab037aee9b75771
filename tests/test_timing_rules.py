"""The timing rules, as golden cases: which combinations of agent timings and etcd election
timeout keep a membership through an etcd leader change (agent_config.leader_change_problem),
and the refusal each one that does not gets — from the agent configuration, `hastack lab up`
and `hastack cluster up` options, and a scenario's `timings:`."""

from __future__ import annotations

import argparse

import pytest

from hastack.cli.timing_options import timings_from_args
from hastack.errors import ConfigError, HastackError
from hastack.lab.net.lab import FAST_ELECTION_MS, FAST_TIMINGS
from hastack.lab.scenario import Scenario
from hastack.model.agent_config import Timings, leader_change_problem
from hastack.model.document import load_yaml, validate

# (lease-ttl, renew-interval, store-timeout, election-timeout) -> rides out a leader change?
# A membership is lost at renew + 2 × store after its last good renewal; it must come no
# sooner than renew + 2.5 × election + 0.25 s (re-send) + 0.25 s (margin).
GOLDEN = [
    # the agents' defaults on etcd's default 1 s: 4 s ≥ 1 + 2.5 + 0.5 (just)
    ((5, 1.0, 1.5, 1.0), True),
    # the lab's fast timings and election: 2.5 s ≥ 0.5 + 1.25 + 0.5 = 2.25 s
    ((4, 0.5, 1.0, 0.5), True),
    # the lab's former fast timings: 2 s < 2.25 s (the soak lost healthy memberships)
    ((3, 0.5, 0.75, 0.5), False),
    # the former rule's edge (2 × store = 3 × election) is not enough on a 1 s election
    ((4, 0.5, 1.0, 2 / 3), False),
    # store-timeout 0.875 s is the least on a 500 ms election
    ((3, 0.5, 0.875, 0.5), True),
    ((3, 0.5, 0.85, 0.5), False),
    # the agents' defaults on a 1.5 s election: 4 s < 5.25 s
    ((5, 1.0, 1.5, 1.5), False),
    # a longer renew interval changes nothing: both sides grow by it
    ((7, 3.0, 1.5, 1.0), True),
    # the in-memory store's agents (tests/helpers.py)
    ((2, 0.3, 0.5, 0.2), True),
]


@pytest.mark.parametrize(("case", "rides_out"), GOLDEN, ids=str)
def test_golden(case: tuple[float, float, float, float], rides_out: bool) -> None:
    ttl, renew, store, election = case
    timings = Timings(lease_ttl=ttl, renew_interval=renew, store_timeout=store)
    problem = leader_change_problem(timings, election)
    assert (problem is None) is rides_out, problem


def test_the_refusal_names_every_setting_and_what_would_do() -> None:
    timings = Timings(lease_ttl=3, renew_interval=0.5, store_timeout=0.75)
    assert leader_change_problem(timings, 0.5) == (
        "timings cannot ride out an etcd leader change: a membership is lost 2s after its "
        "last good renewal (renew-interval 0.5s + 2 × store-timeout 0.75s), but when the etcd "
        "leader dies renewals fail for up to 2.5 × election-timeout 0.5s = 1.25s, so it must "
        "be at least 0.5s + 1.25s + 0.25s (re-send) + 0.25s (margin) = 2.25s: give "
        "store-timeout ≥ 0.875s (and lease-ttl above the new loss time), or "
        "election-timeout ≤ 0.4s"
    )


def test_what_the_refusal_suggests_is_accepted() -> None:
    # store-timeout 0.875 s (renew 0.5 + 1.75 = 2.25 s < 3 s) and election 0.4 s
    assert (
        leader_change_problem(Timings(lease_ttl=3, renew_interval=0.5, store_timeout=0.875), 0.5)
        is None
    )
    assert (
        leader_change_problem(Timings(lease_ttl=3, renew_interval=0.5, store_timeout=0.75), 0.4)
        is None
    )


def test_the_labs_defaults_obey_it() -> None:
    assert leader_change_problem(FAST_TIMINGS, FAST_ELECTION_MS / 1000) is None
    assert leader_change_problem(Timings(), 1.0) is None  # agents' and hastack init's


def args(**given: object) -> argparse.Namespace:
    values: dict[str, object] = {
        "lease_ttl": "4s", "renew_interval": "500ms", "store_timeout": "1s", "election_ms": 500
    }  # fmt: skip
    values.update(given)
    return argparse.Namespace(**values)


def test_command_line_timings_are_refused_with_the_options_named() -> None:
    assert timings_from_args(args()) == FAST_TIMINGS
    with pytest.raises(HastackError) as caught:
        timings_from_args(args(election_ms=1000))
    text = str(caught.value)
    assert text.startswith(
        "timings refused (--renew-interval, --store-timeout, --election-ms): timings cannot "
        "ride out an etcd leader change"
    )
    assert "give store-timeout ≥ 1.5s" in text
    with pytest.raises(HastackError, match="--election-ms must be positive, not 0"):
        timings_from_args(args(election_ms=0))
    with pytest.raises(HastackError, match="must be less than lease-ttl"):
        timings_from_args(args(lease_ttl="2s"))


SCENARIO = """\
name: s
duration: 10s
cluster: {}
"""


def test_a_scenario_whose_timings_cannot_ride_out_a_leader_change_is_refused() -> None:
    validate(load_yaml(SCENARIO, "s.yaml"), Scenario)  # the lab's fast timings: fine
    text = SCENARIO + "timings: {lease-ttl: 3s, renew-interval: 500ms, store-timeout: 750ms}\n"
    with pytest.raises(ConfigError) as caught:
        validate(load_yaml(text, "s.yaml"), Scenario)
    [problem] = caught.value.problems
    assert "timings with election-ms 500: timings cannot ride out an etcd leader change" in problem
    text = SCENARIO + "timings: {lease-ttl: 5s, renew-interval: 1s, store-timeout: 1.5s}\n"
    validate(load_yaml(text + "election-ms: 1000\n", "s.yaml"), Scenario)
    with pytest.raises(ConfigError, match="election-ms 1500"):
        validate(load_yaml(text + "election-ms: 1500\n", "s.yaml"), Scenario)
