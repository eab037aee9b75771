"""The evacuate step of a compute's fencing level (hastack.compute.fence_step): a record is
written only after the power device of the same level succeeded, only by the DC that still
leads, and a level that would evacuate without powering off is refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hastack.compute.evacuation import EvacuationRecord, RecordState
from hastack.compute.fence_step import evacuate_steps
from hastack.errors import ConfigError
from hastack.fencing.fencer import fence_node
from hastack.membership.election import campaign
from hastack.model.config import ClusterConfig, FencingSpec
from hastack.model.document import format_path, load_yaml, validate
from hastack.model.members import DcRecord
from hastack.store import Keys
from hastack.store.memory import MemoryBackend, MemoryStore

AGENTS = str(Path(__file__).parent / "fence")
KEYS = Keys("t")


def spec(levels: dict[str, list[list[str]]]) -> FencingSpec:
    return FencingSpec.model_validate(
        {
            "devices": [
                {"device": "broken", "agent": "fence_test_fail"},
                {"device": "power", "agent": "fence_test_ok"},
                {"device": "evacuate", "agent": "hastack:evacuate"},
            ],
            "levels": levels,
        }
    )


async def _fence(
    levels: dict[str, list[list[str]]], *, deposed: bool = False
) -> tuple[bool, str, bytes | None]:
    store = MemoryStore(MemoryBackend())
    lease = await store.grant_lease(10)
    won = await campaign(store, KEYS, DcRecord("n1", 0, lease.id))
    assert won is not None
    epoch = won.epoch
    if deposed:
        await store.delete(KEYS.dc)
    outcome = await fence_node(
        spec(levels),
        "c2",
        action="off",
        by="n1",
        epoch=epoch,
        agent_dirs=(AGENTS,),
        steps=evacuate_steps(store, KEYS, epoch=epoch, by="n1"),
    )
    stored = await store.get(KEYS.evacuation("c2"))
    await store.close()
    return outcome.record.succeeded, outcome.record.reason, stored.value if stored else None


def test_the_record_follows_the_power_device_of_the_level_that_succeeds() -> None:
    ok, reason, raw = asyncio.run(_fence({"c2": [["broken", "evacuate"], ["power", "evacuate"]]}))
    assert ok
    assert "level 1: broken: off failed" in reason
    assert "level 2: evacuate: evacuation of c2 recorded" in reason
    assert raw is not None
    record = EvacuationRecord.decode(raw)
    assert record.state is RecordState.PENDING
    assert record.by == "n1"


def test_no_record_when_power_fails() -> None:
    # Negative control: the step after a failing power device never runs.
    ok, reason, raw = asyncio.run(_fence({"c2": [["broken", "evacuate"]]}))
    assert not ok
    assert raw is None
    assert "evacuation of c2 recorded" not in reason


def test_a_deposed_dc_records_nothing() -> None:
    ok, reason, raw = asyncio.run(_fence({"c2": [["power", "evacuate"]]}, deposed=True))
    assert not ok
    assert raw is None
    assert "could not record the evacuation of c2" in reason


def _check(levels: dict[str, list[list[str]]]) -> list[str]:
    text = ClusterConfig.model_validate(
        {
            "nodes": [{"node": "c2"}],
            "fencing": spec(levels).model_dump(mode="json", by_alias=True),
        }
    ).reference_problems()
    return [message for _, message in text]


def test_a_compute_without_a_power_device_is_refused_for_evacuation() -> None:
    assert _check({"c2": [["power", "evacuate"]]}) == []
    (only,) = _check({"c2": [["evacuate"]]})
    assert only.startswith(
        "compute c2 cannot be evacuated: no fence device in this level powers it off"
    )
    (last,) = _check({"c2": [["evacuate", "power"]]})
    assert "must be the last device of the level" in last


def test_the_refusal_names_its_line() -> None:
    text = """
nodes: [{node: c2}]
fencing:
  devices:
    - {device: evacuate, agent: "hastack:evacuate"}
  levels:
    c2: [[evacuate]]
"""
    with pytest.raises(ConfigError) as caught:
        validate(load_yaml(text, "c.yaml"), ClusterConfig, checks=ClusterConfig.reference_problems)
    assert "c.yaml:7: fencing.levels.c2[0]: compute c2 cannot be evacuated" in str(caught.value)


def test_a_compute_the_evacuate_step_names_without_a_level_is_refused() -> None:
    """Named by the evacuate device but with no level running it, a compute would be fenced
    and silently never evacuated (the step only ever follows a power device): refused, with
    the level to add; without any power device for it, refused saying so."""

    def problems(power_targets: list[str], levels: dict[str, list[list[str]]]) -> list[str]:
        config = ClusterConfig.model_validate(
            {
                "nodes": [{"node": "c1"}, {"node": "c2"}],
                "fencing": {
                    "devices": [
                        {"device": "ipmi", "agent": "fence_test_ok", "targets": power_targets},
                        {"device": "evacuate", "agent": "hastack:evacuate",
                         "targets": ["c1", "c2"]},
                    ],
                    "levels": levels,
                },
            }
        )  # fmt: skip
        return [f"{format_path(loc)}: {m}" for loc, m in config.reference_problems()]

    both = {"c1": [["ipmi", "evacuate"]], "c2": [["ipmi", "evacuate"]]}
    assert problems(["c1", "c2"], both) == []
    assert problems(["c1", "c2"], {"c1": both["c1"]}) == [
        "fencing.devices[1].targets[1]: compute c2 cannot be evacuated: the hastack:evacuate "
        "device 'evacuate' names it but no fencing level of c2 runs it; add a level after a "
        "device that powers it off, e.g. levels: c2: [[ipmi, evacuate]]"
    ]
    (only,) = problems(["c1"], {"c1": both["c1"], "c2": [["ipmi"]]})
    assert only.endswith(
        "no fencing level of c2 runs it; no fence device can power it off: add one, and a "
        "level c2: [[POWER-DEVICE, evacuate]]"
    )


def test_an_evacuate_step_is_never_a_level_of_its_own() -> None:
    levels = spec({}).levels_for("c2")
    assert [[d.device for d in level] for level in levels] == [["broken"], ["power"]]


def test_status_lists_pending_evacuations_with_why_they_wait() -> None:
    from dataclasses import replace

    from hastack.compute.evacuation import new_record
    from hastack.model.members import ClusterSnapshot, StoredKey
    from hastack.ops.status import _evacuations

    waiting = replace(
        new_record("c2", 100.0, 3, "n1"),
        attempts=2,
        next_try=112.0,
        last_error="connection refused",
    )
    done = replace(new_record("c5", 90.0, 3, "n1"), state=RecordState.DONE)
    other = {
        f"evacuate/{r.node}": StoredKey(f"evacuate/{r.node}", r.encode(), 1, 1, 0)
        for r in (waiting, done)
    }
    snapshot = ClusterSnapshot(1, None, {}, {}, other, ())
    lines = _evacuations(snapshot, now=110.0)
    assert lines == [
        "evacuation of c2: pending, fenced 10s ago, instances not read yet; Nova: connection "
        "refused (try 2, next in 2s)",
        "evacuation of c5: done; the host stays disabled until it is back (fenced 20s ago)",
    ]
