"""Writes the compute scenarios (scenarios/compute-*.yaml) for N computes: the cluster part
repeats one fencing level per compute, which is easier generated than typed.

    python bench/compute_scenario.py          # rewrites every scenarios/compute-*.yaml

Not a benchmark: a generator kept beside the benchmark that uses its output.
"""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def cluster(computes: int) -> dict[str, object]:
    names = [f"c{i}" for i in range(1, computes + 1)]
    return {
        "properties": {
            "stonith-enabled": True,
            "stonith-action": "off",
            "reconnect-interval": "0s",
        },
        "op-defaults": {"timeout": "10s"},
        # The computes are named by the fencing below, so the configuration lists them, as
        # it lists any node it names; the controllers it does not name need no entry.
        "nodes": [{"node": name} for name in names],
        "fencing": {
            "devices": [
                {"device": "power", "agent": "fence_hastack_local",
                 "params": {"registry": "${power}"}},
                {"device": "evacuate", "agent": "hastack:evacuate", "targets": names},
            ],
            "levels": {name: [["power", "evacuate"]] for name in names},
        },
        "resources": [
            {
                "primitive": "evacuator",
                "agent": "hastack:evacuator",
                "params": {"nova-url": "${nova}", "parallel": "4", "timeout": "3s"},
                "ops": [{"name": "monitor", "interval": "2s"}],
            },
            {
                "clone": "nova-compute-clone",
                "resource": {
                    "primitive": "nova-compute",
                    "agent": "hastack:service",
                    "params": {
                        "command": "exec ${python} -m hastack.lab.nova.compute --api ${nova_base} "
                        "--host $HASTACK_NODE --state ${nova_state}/$HASTACK_NODE "
                        "--instances ${instances}",
                    },
                    "ops": [{"name": "monitor", "interval": "1s"}],
                },
            },
        ],
        "constraints": [
            {"location": "evacuator-on-controllers", "resource": "evacuator",
             "rules": [{"score": "-INFINITY",
                        "expressions": [{"attribute": "#kind", "op": "ne", "value": "cluster"}]}]},
            {"location": "nova-compute-on-computes", "resource": "nova-compute-clone",
             "rules": [{"score": "-INFINITY",
                        "expressions": [{"attribute": "#kind", "op": "ne", "value": "remote"}]}]},
        ],
    }  # fmt: skip


def scenario(
    name: str,
    description: str,
    computes: int,
    nemesis: list[dict[str, object]],
    nova: dict[str, object],
    duration: str = "30s",
) -> dict[str, object]:
    return {
        "name": name,
        "description": description,
        "lab": {"nodes": 3, "computes": computes},
        "cluster": cluster(computes),
        "ready": ["evacuator", "nova-compute"],
        "ready-timeout": "120s",
        # A light etcd load beside the faults: the controllers' store keeps answering.
        "workloads": [{"kind": "etcd-set", "clients": 1, "rate": 5, "duration": duration}],
        "nemesis": nemesis,
        "settle": "2s",
        "nova": nova,
    }  # fmt: skip


SCENARIOS = {
    "compute-crash": scenario(
        "compute-crash",
        "K1: crash a compute running 6 instances (4 evacuable): fenced first, evacuated within "
        "fence + 10 s, the others stay down, it boots disabled and is enabled once done",
        3,
        [{"at": "2s", "op": "crash", "node": "c2"}, {"at": "16s", "op": "start", "node": "c2"}],
        {"host": "c2", "instances": 6, "evacuable": 4, "within": "10s"},
        "28s",
    ),
    "compute-partition": scenario(
        "compute-partition",
        "K2: cut a compute off: its instances run until the fence, never twice, then are "
        "evacuated",
        3,
        [{"at": "2s", "op": "partition", "groups": "c2 | @rest"},
         {"at": "14s", "op": "heal"}, {"at": "15s", "op": "start", "node": "c2"}],
        {"host": "c2", "instances": 6, "evacuable": 4, "within": "10s"},
        "28s",
    ),
    "compute-kill-service": scenario(
        "compute-kill-service",
        "K3: kill the compute service on a host: restarted in place, no fence, no evacuation",
        3,
        [{"at": "2s", "op": "kill", "node": "c3", "process": "nova-compute"}],
        {"host": "c3", "instances": 4, "evacuable": 4, "expect": "stays"},
        "14s",
    ),
    "compute-crash-30": scenario(
        "compute-crash-30",
        "K1 with 30 computes",
        30,
        [{"at": "2s", "op": "crash", "node": "c2"}, {"at": "18s", "op": "start", "node": "c2"}],
        {"host": "c2", "instances": 6, "evacuable": 4, "within": "10s"},
        "30s",
    ),
    "compute-partition-30": scenario(
        "compute-partition-30",
        "K2 with 30 computes",
        30,
        [{"at": "2s", "op": "partition", "groups": "c2 | @rest"},
         {"at": "16s", "op": "heal"}, {"at": "17s", "op": "start", "node": "c2"}],
        {"host": "c2", "instances": 6, "evacuable": 4, "within": "10s"},
        "30s",
    ),
    "compute-kill-service-30": scenario(
        "compute-kill-service-30",
        "K3 with 30 computes",
        30,
        [{"at": "2s", "op": "kill", "node": "c3", "process": "nova-compute"}],
        {"host": "c3", "instances": 4, "evacuable": 4, "expect": "stays"},
        "16s",
    ),
}  # fmt: skip


def render(body: dict[str, object]) -> str:
    """The file's text: what tests/test_scenario_files.py compares the stored file with."""
    header = f"# {body['description']}\n# Generated by bench/compute_scenario.py: edit there.\n"
    return header + yaml.safe_dump(body, sort_keys=False, width=100)


def main() -> int:
    for name, body in SCENARIOS.items():
        path = ROOT / "scenarios" / f"{name}.yaml"
        path.write_text(render(body))
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
