"""Every scheduling run owns its state: nothing mutable lives at module level in the
scheduler, so two runs (one after the other, or at the same time in two threads) never share
anything and nothing of one run outlives it."""

from __future__ import annotations

import enum
import importlib
import inspect
import pkgutil
import sys
import threading
from collections import Counter, OrderedDict, defaultdict, deque
from types import ModuleType

import hastack.scheduler
from hastack.model.config import ClusterConfig
from hastack.model.state import ClusterState, NodeStatus, ResourceStatus
from hastack.scheduler import Plan, schedule

MUTABLE = (dict, list, set, bytearray, deque, defaultdict, OrderedDict, Counter)


def _scheduler_modules() -> list[ModuleType]:
    names = [
        f"{hastack.scheduler.__name__}.{m.name}"
        for m in pkgutil.iter_modules(hastack.scheduler.__path__)
    ]
    return [hastack.scheduler, *(importlib.import_module(n) for n in sorted(names))]


def _mutable_globals(module: ModuleType) -> list[str]:
    found = []
    for name, value in vars(module).items():
        if name.startswith("__"):
            continue
        if isinstance(value, MUTABLE):
            found.append(f"{module.__name__}.{name}")
        elif (
            inspect.isclass(value)
            and value.__module__ == module.__name__
            and not issubclass(value, enum.Enum)  # its member tables are the enum's own
        ):
            for attr, member in vars(value).items():
                if not attr.startswith("__") and isinstance(member, MUTABLE):
                    found.append(f"{module.__name__}.{name}.{attr}")
    return found


def test_no_mutable_state_at_module_level() -> None:
    modules = _scheduler_modules()
    assert len(modules) > 5  # the package was found
    found = [name for m in modules for name in _mutable_globals(m)]
    assert found == [], f"module-level mutable state (make it part of the run): {found}"


def _config(stickiness: int) -> ClusterConfig:
    """The same resources; only the default stickiness (resolved with the meta attributes)
    differs, and decides whether running resources stay or spread."""
    return ClusterConfig.model_validate(
        {
            "properties": {"stonith-enabled": False},
            "resource-defaults": {"resource-stickiness": stickiness},
            "resources": [
                *({"primitive": f"r{i}", "agent": "ocf:heartbeat:Dummy"} for i in range(30)),
                {
                    "group": "g",
                    "meta": {"priority": 1},
                    "resources": [
                        {"primitive": f"g{i}", "agent": "ocf:heartbeat:Dummy"} for i in range(5)
                    ],
                },
                {
                    "clone": "cl",
                    "resource": {"primitive": "cp", "agent": "ocf:heartbeat:Dummy"},
                },
            ],
        }
    )


STATE = ClusterState(
    nodes={n: NodeStatus(n) for n in ("n1", "n2", "n3")},
    # everything runs on n1: with stickiness it stays, without it spreads
    resources=tuple(ResourceStatus(f"r{i}", "n1") for i in range(30)),
)


def test_runs_one_after_the_other_share_nothing() -> None:
    sticky, loose = _config(100), _config(0)
    first = schedule(sticky, STATE)
    assert schedule(loose, STATE) != first  # the two runs do decide differently
    assert schedule(sticky, STATE) == first


def test_runs_in_two_threads_share_nothing() -> None:
    configs = {"sticky": _config(100), "loose": _config(0)}
    expected = {name: schedule(config, STATE) for name, config in configs.items()}
    assert expected["sticky"] != expected["loose"]
    got: dict[str, list[Plan]] = {name: [] for name in configs}

    def work(name: str) -> None:
        for _ in range(25):
            got[name].append(schedule(configs[name], STATE))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: runs interleave
    try:
        threads = [threading.Thread(target=work, args=(name,)) for name in configs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    for name, plans in got.items():
        assert len(plans) == 25
        assert all(plan == expected[name] for plan in plans), name
