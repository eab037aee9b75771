"""hastack's scheduler against Pacemaker's on Pacemaker's own scheduler regression cases.

For every case (cts/scheduler xml/NAME.xml with its summary/NAME.summary): import the CIB
(hastack.cib), run hastack's scheduler on it and compare the final placement — every
primitive's multiset of (node, role) — with Pacemaker's "Revised Cluster Status". A case is
*supported* when the import left nothing out, *matching* when every primitive matches.

    .venv/bin/python bench/cts_report.py                    # all cases, summary
    .venv/bin/python bench/cts_report.py --case NAME        # one case, every difference
    .venv/bin/python bench/cts_report.py --json             # machine-readable
    .venv/bin/python bench/cts_report.py --cases-dir DIR    # default ../shared/pacemaker-cts

The comparison itself (what "supported" and "matching" mean, roles as Pacemaker prints them,
clone instances by primitive) is bench/cts/compare.py, shared with tests/test_cts_agreement.py,
which fails when the figures fall. The cases are reference data: nothing here copies them
anywhere. Not a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cts.compare import (
    CaseResult,
    Comparison,
    Schedule,
    case_files,
    describe,
    figures,
    run_case,
)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CASES = REPO.parent / "shared" / "pacemaker-cts"


def _load_scheduler() -> Schedule | None:
    try:
        from hastack.scheduler import schedule
    except ImportError:
        return None
    return schedule


def _print_case(case: CaseResult, compared: Comparison) -> None:
    result, summary, plan = compared.imported, compared.summary, compared.plan
    pacemaker, hastack = compared.pacemaker, compared.hastack
    print(f"case {case.name}: {'matching' if case.matching else 'MISMATCH'}")
    print(f"  features: {', '.join(case.features) or '-'}")
    print(f"  now: {result.state.now:.0f} ({result.now_source})")
    for note in result.notes:
        print(f"  note: {note}")
    if result.names:
        print("  renamed: " + ", ".join(f"{p} -> {h}" for h, p in result.names.items()))
    print("  placement (pacemaker | hastack):")
    for rsc in sorted(set(pacemaker) | set(hastack)):
        want, got = pacemaker.get(rsc, Counter()), hastack.get(rsc, Counter())
        mark = " " if +want == +got else "!"
        print(f"  {mark} {rsc}: {describe(want)} | {describe(got)}")
    print("  pacemaker transition:")
    for t in summary.transitions:
        print(f"    {t.text}")
    print("  hastack actions:")
    for a in plan.actions:
        kind = a.kind.value if hasattr(a.kind, "value") else a.kind
        print(f"    {a.id}: {kind} {a.instance or ''} on {a.node} ({a.reason})")
    for w in plan.warnings:
        print(f"  warning: {w}")
    for d in case.diffs:
        print(f"  diff: {d}")


def print_report(data: Mapping[str, Any], cases_dir: Path) -> None:
    total = data["cases"]
    print(f"Pacemaker scheduler regression cases: {total} in {cases_dir}")
    print(
        f"Import: {data['imported']} imported, {data['supported']} with no unsupported feature "
        f"({100 * data['supported'] / max(1, total):.0f}%)"
    )
    for name, error in data["import_errors"].items():
        print(f"  import error {name}: {error}")
    if data["summary_problems"]:
        print(f"  summaries with unparsed lines: {len(data['summary_problems'])}")
    print("Unsupported features (cases):")
    line = "  "
    for tag, n in data["unsupported_features"].items():
        item = f"{tag} {n}, "
        if len(line) + len(item) > 96:
            print(line.rstrip(", "))
            line = "  "
        line += item
    print(line.rstrip(", "))
    if not data["scheduler"]:
        print("Scheduler: not available (hastack.scheduler.schedule cannot be imported)")
        print(f"Total time {data['elapsed_seconds']:.1f}s")
        return
    scheduled, matching = data["scheduled"], data["matching"]
    print(
        f"Scheduler: {data['supported']} supported, {scheduled} scheduled, {matching} matching "
        f"({100 * matching / max(1, data['supported']):.0f}% of supported); "
        f"scheduler time {data['scheduler_seconds']:.2f}s "
        f"(slowest: {', '.join(f'{n} {s:.3f}s' for n, s in data['slowest'])})"
    )
    for name, error in data["schedule_errors"].items():
        print(f"  scheduler error {name}: {error}")
    for tag, v in data["by_feature"].items():
        why = ", ".join(f"{t} {n}" for t, n in v["left_out_for"].items())
        print(
            f"Feature {tag}: {v['cases']} cases, {v['supported']} supported, "
            f"{v['matching']} matching" + (f"; the others left out for: {why}" if why else "")
        )
    if data["mismatch_by_feature"]:
        print("Mismatches by feature (mismatching / scheduled cases with it):")
        line = "  "
        for tag, v in data["mismatch_by_feature"].items():
            item = f"{tag} {v['mismatching']}/{v['of']}, "
            if len(line) + len(item) > 96:
                print(line.rstrip(", "))
                line = "  "
            line += item
        print(line.rstrip(", "))
    if data["mismatches"]:
        print("Mismatching cases (first difference):")
        for name, diffs in sorted(data["mismatches"].items()):
            more = f" (+{len(diffs) - 1} more)" if len(diffs) > 1 else ""
            print(f"  {name}: {diffs[0]}{more}")
    print(f"Total time {data['elapsed_seconds']:.1f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", help="one case, with every difference")
    parser.add_argument("--cases-dir", type=Path, default=DEFAULT_CASES)
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    xml_dir = args.cases_dir / "xml"
    if not xml_dir.is_dir():
        print(f"cts_report: no cases in {xml_dir}", file=sys.stderr)
        return 2
    schedule = _load_scheduler()
    wall_now = time.time()
    files = case_files(args.cases_dir)
    if args.case:
        files = [(xml, summary) for xml, summary in files if xml.stem == args.case]
        if not files:
            print(f"cts_report: no case {args.case!r}", file=sys.stderr)
            return 2
    started = time.perf_counter()
    results: list[CaseResult] = []
    verbose = bool(args.case) and not args.json
    for xml, summary in files:
        run = run_case(xml, summary, schedule, wall_now)
        case = run.case
        results.append(case)
        if verbose and run.compared is not None:
            _print_case(case, run.compared)
        elif verbose:
            print(f"case {case.name}: not scheduled")
            for item in case.unsupported:
                print(f"  unsupported: {item}")
            if case.schedule_error:
                print(f"  scheduler error: {case.schedule_error}")
            if run.imported is not None:
                for note in run.imported.notes:
                    print(f"  note: {note}")
    data = figures(results, time.perf_counter() - started, schedule is not None)
    if args.json:
        print(json.dumps(data, indent=2))
    elif not args.case:
        print_report(data, args.cases_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
