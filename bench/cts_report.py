"""hastack's scheduler against Pacemaker's on Pacemaker's own scheduler regression cases.

For every case (cts/scheduler xml/NAME.xml with its summary/NAME.summary): import the CIB
(hastack.cib), run hastack's scheduler on it and compare the final placement — every
primitive's multiset of (node, role) — with Pacemaker's "Revised Cluster Status". A case is
*supported* when the import left nothing out, *matching* when every primitive matches.

    .venv/bin/python bench/cts_report.py                    # all cases, summary
    .venv/bin/python bench/cts_report.py --case NAME        # one case, every difference
    .venv/bin/python bench/cts_report.py --json             # machine-readable
    .venv/bin/python bench/cts_report.py --cases-dir DIR    # default ../shared/pacemaker-cts

Roles are compared as Pacemaker prints them: an instance of a promotable clone that is not
promoted is Unpromoted (hastack's Started counts as Unpromoted there). Clone instances are
compared by primitive, ignoring instance numbers. The cases are reference data: nothing here
copies them anywhere. Not a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cts.summary import Summary, base_name, parse_summary, placement
from hastack.cib import CibImport, import_cib
from hastack.errors import ConfigError
from hastack.model.config import Clone, ClusterConfig, Group
from hastack.model.state import ClusterState

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CASES = REPO.parent / "shared" / "pacemaker-cts"

Placement = dict[str, Counter[tuple[str, str]]]


@dataclass
class CaseResult:
    name: str
    imported: bool = False
    import_error: str | None = None
    unsupported: tuple[str, ...] = ()
    unsupported_features: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    scheduled: bool = False
    schedule_error: str | None = None
    schedule_seconds: float = 0.0
    diffs: list[str] = field(default_factory=list)
    summary_problems: tuple[str, ...] = ()

    @property
    def supported(self) -> bool:
        return self.imported and not self.unsupported

    @property
    def matching(self) -> bool:
        return self.scheduled and not self.diffs


def _load_scheduler() -> Callable[[ClusterConfig, ClusterState], Any] | None:
    try:
        from hastack.scheduler import schedule
    except ImportError:
        return None
    return schedule


def _effective_time(text: str | None) -> float | None:
    """crm_simulate's `-t` time as printed ("2005-020", "2005-020T12:30", "2014-05-07 00:28:00")."""
    if text is None:
        return None
    for fmt in ("%Y-%jT%H:%M:%S", "%Y-%jT%H:%M", "%Y-%j", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        try:
            return datetime.strptime(text.strip(), fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    return None


def _structure(result: CibImport) -> tuple[dict[str, list[str]], set[str]]:
    """Cloned groups' members and the primitives of promotable clones, in Pacemaker's ids."""
    members: dict[str, list[str]] = {}
    promotable: set[str] = set()
    for top in result.config.resources:
        if not isinstance(top, Clone):
            continue
        inner = top.resource
        names = (
            [m.primitive for m in inner.resources]
            if isinstance(inner, Group)
            else [inner.primitive]
        )
        if isinstance(inner, Group):
            members[result.pacemaker_name(inner.group)] = [result.pacemaker_name(n) for n in names]
        if top.promotable:
            promotable.update(result.pacemaker_name(n) for n in names)
    return members, promotable


def _normalise(placed: Placement, promotable: set[str]) -> Placement:
    out: Placement = {}
    for rsc, counter in placed.items():
        fixed: Counter[tuple[str, str]] = Counter()
        for (node, role), n in counter.items():
            shown = "Unpromoted" if role == "Started" and rsc in promotable else role
            fixed[(node, shown)] += n
        out[rsc] = fixed
    return out


def hastack_placement(result: CibImport, plan: Any) -> Placement:
    out: Placement = {}
    for a in plan.assignments:
        rsc = result.pacemaker_name(base_name(a.primitive))
        counter = out.setdefault(rsc, Counter())
        role = a.role.value if hasattr(a.role, "value") else str(a.role)
        if a.node is not None and role != "Stopped":
            counter[(result.pacemaker_name(a.node), role)] += 1
    return out


def _fmt(counter: Counter[tuple[str, str]]) -> str:
    if not counter:
        return "stopped"
    parts = []
    for (node, role), n in sorted(counter.items()):
        parts.append(f"{node} {role}" + (f" x{n}" if n > 1 else ""))
    return ", ".join(parts)


def compare(pacemaker: Placement, hastack: Placement, resources: set[str]) -> list[str]:
    diffs = []
    for rsc in sorted(resources | set(pacemaker) | set(hastack)):
        want = pacemaker.get(rsc, Counter())
        got = hastack.get(rsc, Counter())
        if +want != +got:
            diffs.append(f"{rsc}: pacemaker {_fmt(want)}, hastack {_fmt(got)}")
    return diffs


def run_case(
    xml_path: Path,
    summary_path: Path,
    schedule: Callable[[ClusterConfig, ClusterState], Any] | None,
    wall_now: float,
    verbose: bool = False,
) -> tuple[CaseResult, CibImport | None, Summary | None]:
    case = CaseResult(name=xml_path.stem)
    summary: Summary | None = None
    if summary_path.exists():
        summary = parse_summary(summary_path.read_text())
        case.summary_problems = summary.unparsed
    now = _effective_time(summary.effective_time if summary else None) or wall_now
    try:
        result = import_cib(xml_path.read_text(), xml_path.name, now=now)
    except ConfigError as exc:
        case.import_error = str(exc)
        return case, None, summary
    case.imported = True
    case.unsupported = result.unsupported
    case.unsupported_features = tuple(sorted(result.unsupported_features))
    case.features = tuple(sorted(result.features))
    if schedule is None or not case.supported or summary is None:
        return case, result, summary
    started = time.perf_counter()
    try:
        plan = schedule(result.config, result.state)
    except Exception as exc:  # a bug in the scheduler is a result here, not a crash
        case.schedule_seconds = time.perf_counter() - started
        case.schedule_error = f"{type(exc).__name__}: {exc}"
        return case, result, summary
    case.schedule_seconds = time.perf_counter() - started
    case.scheduled = True
    members, promotable = _structure(result)
    pacemaker = _normalise(placement(summary.revised, members), promotable)
    hastack = _normalise(hastack_placement(result, plan), promotable)
    configured = {result.pacemaker_name(p.primitive) for p in result.config.primitives()}
    case.diffs = compare(pacemaker, hastack, configured)
    if verbose:
        _print_case(case, result, summary, pacemaker, hastack, plan)
    return case, result, summary


def _print_case(
    case: CaseResult,
    result: CibImport,
    summary: Summary,
    pacemaker: Placement,
    hastack: Placement,
    plan: Any,
) -> None:
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
        print(f"  {mark} {rsc}: {_fmt(want)} | {_fmt(got)}")
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


def _counts(values: list[tuple[str, ...]]) -> Counter[str]:
    counter: Counter[str] = Counter()
    for tags in values:
        counter.update(set(tags))
    return counter


def report(cases: list[CaseResult], elapsed: float, have_scheduler: bool) -> dict[str, Any]:
    supported = [c for c in cases if c.supported]
    scheduled = [c for c in supported if c.scheduled]
    matching = [c for c in scheduled if c.matching]
    mismatching = [c for c in scheduled if not c.matching]
    errors = [c for c in supported if c.schedule_error]
    per_feature_total = _counts([c.features for c in scheduled])
    per_feature_bad = _counts([c.features for c in mismatching])
    return {
        "cases": len(cases),
        "import_errors": {c.name: c.import_error for c in cases if c.import_error},
        "summary_problems": {c.name: list(c.summary_problems) for c in cases if c.summary_problems},
        "imported": sum(c.imported for c in cases),
        "supported": len(supported),
        "unsupported_features": dict(
            _counts([c.unsupported_features for c in cases if c.unsupported]).most_common()
        ),
        "scheduler": have_scheduler,
        "scheduled": len(scheduled),
        "matching": len(matching),
        "schedule_errors": {c.name: c.schedule_error for c in errors},
        "scheduler_seconds": sum(c.schedule_seconds for c in supported),
        "slowest": sorted(
            ((c.name, round(c.schedule_seconds, 4)) for c in supported),
            key=lambda x: -x[1],
        )[:3],
        "mismatch_by_feature": {
            tag: {"mismatching": per_feature_bad[tag], "of": per_feature_total[tag]}
            for tag, _ in per_feature_bad.most_common()
        },
        "mismatches": {c.name: c.diffs for c in mismatching},
        "elapsed_seconds": elapsed,
    }


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
    summary_dir = args.cases_dir / "summary"
    if not xml_dir.is_dir():
        print(f"cts_report: no cases in {xml_dir}", file=sys.stderr)
        return 2
    schedule = _load_scheduler()
    wall_now = time.time()
    paths = sorted(xml_dir.glob("*.xml"))
    if args.case:
        paths = [p for p in paths if p.stem == args.case]
        if not paths:
            print(f"cts_report: no case {args.case!r}", file=sys.stderr)
            return 2
    started = time.perf_counter()
    results: list[CaseResult] = []
    for path in paths:
        verbose = bool(args.case) and not args.json
        case, imported, _summary = run_case(
            path, summary_dir / f"{path.stem}.summary", schedule, wall_now, verbose
        )
        results.append(case)
        if verbose and not case.scheduled:
            print(f"case {case.name}: not scheduled")
            for item in case.unsupported:
                print(f"  unsupported: {item}")
            if case.schedule_error:
                print(f"  scheduler error: {case.schedule_error}")
            if imported is not None:
                for note in imported.notes:
                    print(f"  note: {note}")
    data = report(results, time.perf_counter() - started, schedule is not None)
    if args.json:
        print(json.dumps(data, indent=2))
    elif not args.case:
        print_report(data, args.cases_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
