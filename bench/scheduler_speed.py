"""hastack's scheduler against Pacemaker's crm_simulate, on the same generated CIBs.

For each size (nodes x resources, plus a variant with one node gone) it generates a CIB
(bench/cibgen.py), runs `crm_simulate -R -x` (Debian's pacemaker-cli-utils: "process the
input and show what actions the cluster will take", i.e. one scheduler run) and hastack's
`import_cib` + `schedule` in a fresh process each, and prints wall time, peak memory (max
RSS of the process) and the ratios. hastack's time is also split into XML import and the
scheduling itself. Medians of --repeat runs. A figure, never a pass/fail.

(`crm_simulate -S` would also simulate executing every action and is many times slower
again; that is not scheduling, so it is not the anchor.)

    .venv/bin/python bench/scheduler_speed.py [--repeat 3] [--sizes 8x100 16x500 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from cibgen import generate
from debs import ensure_programs

WORKER = """
import json, sys, time
t0 = time.perf_counter()
from hastack.cib import import_cib
from hastack.scheduler import schedule
t1 = time.perf_counter()
text = open(sys.argv[1]).read()
result = import_cib(text, sys.argv[1])
t2 = time.perf_counter()
plan = schedule(result.config, result.state)
t3 = time.perf_counter()
print(json.dumps({"startup": t1 - t0, "import": t2 - t1, "schedule": t3 - t2,
                  "actions": len(plan.actions), "unsupported": len(result.unsupported)}))
"""


@dataclass
class Run:
    wall: float
    rss_mb: float
    detail: dict[str, float]
    finished: bool = True


def _run(argv: list[str], timeout: float, *, capture: bool) -> tuple[Run, str]:
    # Output we do not read goes to /dev/null: an unread pipe would stall the writer.
    started = time.monotonic()
    out_target = subprocess.PIPE if capture else subprocess.DEVNULL
    proc = subprocess.Popen(argv, stdout=out_target, stderr=subprocess.DEVNULL, text=True)
    deadline = started + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            _, _, usage = os.wait4(proc.pid, 0)
            return Run(time.monotonic() - started, usage.ru_maxrss / 1024, {}, finished=False), ""
        time.sleep(0.005)
    wall = time.monotonic() - started
    out = proc.stdout.read() if proc.stdout else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(wall, usage.ru_maxrss / 1024, {}), out


def crm_simulate(path: Path, timeout: float) -> Run:
    run, _ = _run(["crm_simulate", "-R", "-x", str(path)], timeout, capture=False)
    return run


def hastack(path: Path, timeout: float) -> Run:
    run, out = _run([sys.executable, "-c", WORKER, str(path)], timeout, capture=True)
    if run.finished and out.strip():
        run.detail = json.loads(out.strip().splitlines()[-1])
    return run


def median_run(runs: list[Run]) -> Run:
    done = [r for r in runs if r.finished]
    if not done:
        return runs[0]
    by_wall = sorted(done, key=lambda r: r.wall)
    mid = by_wall[len(by_wall) // 2]
    return Run(
        statistics.median(r.wall for r in done),
        statistics.median(r.rss_mb for r in done),
        mid.detail,
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--sizes",
        nargs="+",
        default=["8x100", "16x500", "32x1000", "32x3000", "100x10000"],
        help="NODESxRESOURCES; each also runs with one node failed",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="per crm_simulate run")
    args = parser.parse_args()
    ensure_programs("crm_simulate")
    header = (
        f"{'case':<22}{'crm_simulate':>14}{'MB':>7}{'hastack':>10}{'MB':>7}"
        f"{'import':>9}{'schedule':>10}{'speed-up':>10}{'sched-only':>12}"
    )
    print("scheduler: hastack (import_cib + schedule, fresh process) vs crm_simulate -R -x")
    print(f"medians of {args.repeat} runs; times in seconds, memory = peak RSS")
    print(header)
    with tempfile.TemporaryDirectory(prefix="hastack-bench-") as tmp:
        for size in args.sizes:
            nodes, resources = (int(x) for x in size.split("x"))
            for failed in (False, True):
                name = f"{nodes}x{resources}" + (" failed-node" if failed else "")
                path = Path(tmp) / f"{nodes}x{resources}{'-f' if failed else ''}.xml"
                path.write_text(generate(nodes, resources, failed_node=failed))
                ours = median_run([hastack(path, args.timeout) for _ in range(args.repeat)])
                # One attempt decides whether Pacemaker finishes at all at this size.
                first = crm_simulate(path, args.timeout)
                theirs_runs = [first]
                if first.finished:
                    theirs_runs += [
                        crm_simulate(path, args.timeout) for _ in range(args.repeat - 1)
                    ]
                theirs = median_run(theirs_runs)
                d = ours.detail
                if theirs.finished:
                    their_time = f"{theirs.wall:14.3f}{theirs.rss_mb:7.0f}"
                    ratio = f"{theirs.wall / ours.wall:9.1f}x"
                    sched = d.get("schedule", 0.0)
                    sched_ratio = f"{theirs.wall / sched:11.1f}x" if sched else ""
                else:
                    their_time = f"{'> ' + str(int(args.timeout)) + 's':>14}{theirs.rss_mb:7.0f}"
                    ratio, sched_ratio = f"{'-':>10}", f"{'-':>12}"
                print(
                    f"{name:<22}{their_time}{ours.wall:10.3f}{ours.rss_mb:7.0f}"
                    f"{d.get('import', 0):9.3f}{d.get('schedule', 0):10.3f}{ratio}{sched_ratio}",
                    flush=True,
                )
    print()
    print("speed-up = crm_simulate wall / hastack wall (process start, import and scheduling);")
    print("sched-only = crm_simulate wall / hastack's scheduling alone (the live DC keeps its")
    print("configuration parsed, so this is the per-decision cost in a running cluster).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
