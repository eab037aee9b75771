"""Instance HA at scale: a lab of 3 controllers and N computes (default 100), 6 instances on
one compute (4 evacuable), that compute crashed; prints how long each step took and what the
control plane paid for it. Figures only: it never passes or fails on a time.

    sudo .venv/bin/python bench/compute_scale.py [--computes 100]

Hold the machine-wide lab lock around it on a shared machine:
`flock /tmp/hastack-lab.lock .venv/bin/python bench/compute_scale.py`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compute_scenario import scenario
from hastack.lab.net.lab import LabError
from hastack.lab.scenario import load_scenario, run_scenario


def _events(path: Path) -> list[dict[str, object]]:
    try:
        return [json.loads(x) for x in path.read_text().splitlines()]
    except FileNotFoundError:
        return []


def _collapse(results: Path) -> None:
    """Where a run that never got ready broke, from the status the run recorded every 0.25 s:
    how long the store did not answer, DC changes, nodes online, computes fenced."""
    for status in sorted(results.glob("*/status.jsonl")):
        rows: list[dict[str, Any]] = _events(status)
        if not rows:
            continue
        t0 = float(rows[0]["collected_at"])
        failing = [float(r["collected_at"]) - t0 for r in rows if r.get("error")]
        dcs = [(r.get("dc_node"), r.get("dc_epoch")) for r in rows if r.get("dc_node")]
        changes = sum(1 for a, b in itertools.pairwise(dcs) if a != b)
        online = [sum(1 for n in r["nodes"] if n.get("online")) for r in rows if not r.get("error")]
        pending = rows[-1].get("pending") or []
        print(f"  status recorded {float(rows[-1]['collected_at']) - t0:.0f}s "
              f"(from just before the configuration's apply)")  # fmt: skip
        if failing:
            print(f"  the store did not answer the status in {len(failing)} of {len(rows)} "
                  f"samples, between {failing[0]:.1f}s and {failing[-1]:.1f}s")  # fmt: skip
        first, last = (online[0], online[-1]) if online else ("?", "?")
        print(f"  DC changes: {changes}; nodes online: {first} first, "
              f"{min(online, default=0)} at least, {last} last")  # fmt: skip
        print(f"  evacuation records (computes fenced): {len(pending)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--computes", type=int, default=100)
    parser.add_argument(
        "--results", type=Path, default=Path(tempfile.gettempdir()) / "hastack-compute-scale"
    )
    args = parser.parse_args(argv)
    # Stopped from outside (`timeout`): end as an exception does, so the lab is brought down.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    body = scenario(
        f"compute-scale-{args.computes}",
        f"{args.computes} computes, one crashed with 6 instances (4 evacuable)",
        args.computes,
        [{"at": "2s", "op": "crash", "node": "c2"}, {"at": "20s", "op": "start", "node": "c2"}],
        {"host": "c2", "instances": 6, "evacuable": 4, "within": "10s", "boot-timeout": "120s"},
        "32s",
    )
    body["ready-timeout"] = "300s"
    path = args.results / "scenario.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    started = time.monotonic()

    def say(message: str) -> None:  # the run's own progress, stamped: lab up, ready, faults
        print(f"[{time.monotonic() - started:6.1f}s] {message}", flush=True)

    try:
        result = run_scenario(load_scenario(path), args.results, say=say)
    except LabError as e:
        print(f"compute scale: {args.computes} computes, 3 controllers: the run broke after "
              f"{time.monotonic() - started:.0f}s: {e}")  # fmt: skip
        _collapse(args.results)
        return 1
    took = time.monotonic() - started
    nemesis = _events(result.results / "nemesis.jsonl")
    crash = next((float(e["time"]) for e in nemesis if e.get("f") == "crash"), None)  # type: ignore[arg-type]
    boot = next((float(e["time"]) for e in nemesis if e.get("f") == "start"), None)  # type: ignore[arg-type]
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
    elections = sorted(
        float(e["t"])  # type: ignore[arg-type]
        for p in (result.results / "agents").glob("*/events.jsonl")
        for e in _events(p)
        if e.get("event") == "dc-elected"
    )
    print(f"compute scale: {args.computes} computes, 3 controllers; whole run {took:.0f}s")
    print(f"  verdict: {'VALID' if result.valid else 'NOT VALID'}")
    for check in result.checks:
        print(f"    {check.checker}: {check.valid} {check.summary}")
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
        if boot is not None:
            back = [
                float(e["t"])  # type: ignore[arg-type]
                for e in nova
                if e.get("event") == "report-up" and e.get("host") == "c2" and float(e["t"]) > boot  # type: ignore[arg-type]
            ]
            enabled = [float(e["t"]) for e in nova if e.get("event") == "enable"]  # type: ignore[arg-type]
            print(f"  c2 started again {boot - crash:.1f}s after the crash"
                  + (f"; its service reported {back[0] - boot:.2f}s later" if back else "")
                  + (f"; enabled {enabled[-1] - back[0]:.2f}s after that" if back and enabled
                     else ""))  # fmt: skip
    if crash is not None:
        print(f"  DC elections after the crash: {sum(1 for t in elections if t > crash)}")
    print(f"  memberships lost by other nodes: {lost}")
    print(f"  results: {result.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
