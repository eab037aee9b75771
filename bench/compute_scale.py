"""Instance HA at scale: a lab of 3 controllers and N computes (default 100), 6 instances on
one compute (4 evacuable), that compute crashed; prints how long each step took and what the
control plane paid for it. Figures only: it never passes or fails on a time.

    sudo .venv/bin/python bench/compute_scale.py [--computes 100]

Hold the machine-wide lab lock around it on a shared machine:
`flock /tmp/hastack-lab.lock .venv/bin/python bench/compute_scale.py`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compute_scenario import scenario
from hastack.lab.scenario import load_scenario, run_scenario


def _events(path: Path) -> list[dict[str, object]]:
    try:
        return [json.loads(x) for x in path.read_text().splitlines()]
    except FileNotFoundError:
        return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--computes", type=int, default=100)
    parser.add_argument(
        "--results", type=Path, default=Path(tempfile.gettempdir()) / "hastack-compute-scale"
    )
    args = parser.parse_args(argv)
    body = scenario(
        f"compute-scale-{args.computes}",
        f"{args.computes} computes, one crashed with 6 instances (4 evacuable)",
        args.computes,
        [{"at": "2s", "op": "crash", "node": "c2"}, {"at": "20s", "op": "start", "node": "c2"}],
        {"host": "c2", "instances": 6, "evacuable": 4, "within": "10s"},
        "32s",
    )
    body["ready-timeout"] = "300s"
    path = args.results / "scenario.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    started = time.monotonic()
    result = run_scenario(load_scenario(path), args.results)
    took = time.monotonic() - started
    nemesis = _events(result.results / "nemesis.jsonl")
    crash = next((float(e["time"]) for e in nemesis if e.get("f") == "crash"), None)  # type: ignore[arg-type]
    nova = _events(result.results / "nova" / "events.jsonl")
    instances = result.check("instances")
    fenced = [
        json.loads(x)["wall"]
        for x in (result.results / "agents" / "c2" / "exclusive.jsonl").read_text().splitlines()
        if '"dead"' in x
    ] if (result.results / "agents" / "c2" / "exclusive.jsonl").exists() else []  # fmt: skip
    lost = sum(
        1
        for p in (result.results / "agents").glob("*/events.jsonl")
        if p.parent.name != "c2"
        for e in _events(p)
        if e.get("event") == "membership-lost"
    )
    print(f"compute scale: {args.computes} computes, 3 controllers; whole run {took:.0f}s")
    print(f"  verdict: {'VALID' if result.valid else 'NOT VALID'}; {instances.summary}")
    if crash is not None and fenced:
        fence = min(float(f) for f in fenced if float(f) >= crash - 1)
        print(f"  fenced {fence - crash:.2f}s after the crash")
        forced = [float(e["t"]) for e in nova if e.get("event") == "force-down"]  # type: ignore[arg-type]
        if forced:
            print(f"  Nova forced the host down {forced[0] - fence:.2f}s after the fence")
        moved = instances.details.get("moved_after_fence", {})
        if moved:
            print(f"  evacuated instances ran elsewhere {min(moved.values()):.2f}-"
                  f"{max(moved.values()):.2f}s after the fence")  # fmt: skip
        enabled = [float(e["t"]) for e in nova if e.get("event") == "enable"]  # type: ignore[arg-type]
        if enabled:
            print(f"  re-enabled {enabled[-1] - crash:.1f}s after the crash (host started at 20 s)")
    print(f"  memberships lost by other nodes: {lost}")
    print(f"  results: {result.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
