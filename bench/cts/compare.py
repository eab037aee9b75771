"""hastack's scheduler against Pacemaker's on one of Pacemaker's scheduler regression cases,
and the figures over many: the comparison that bench/cts_report.py prints and
tests/test_cts_agreement.py guards, defined once so that both mean the same by "supported" and
"matching".

    case_files(cases_dir) -> [(xml, summary), ...]
    run_case(xml_path, summary_path, schedule, wall_now) -> CaseRun
    figures(cases, elapsed, have_scheduler) -> {...}

For a case (xml/NAME.xml with summary/NAME.summary): import the CIB (hastack.cib), run
hastack's scheduler on it and compare the final placement — every primitive's multiset of
(node, role) — with Pacemaker's "Revised Cluster Status". A case is *supported* when the
import left nothing out, *matching* when every primitive matches.

Roles are compared as Pacemaker prints them: an instance of a promotable clone that is not
promoted is Unpromoted (hastack's Started counts as Unpromoted there). Clone instances are
compared by primitive, ignoring instance numbers. "Now" is the time the summary says
crm_simulate used, else `wall_now`, as crm_simulate uses the wall clock. The cases are
reference data: they are read where they are and never copied.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cts.summary import Summary, base_name, parse_summary, placement
from hastack.cib import CibImport, import_cib
from hastack.errors import ConfigError
from hastack.model.config import Clone, ClusterConfig, Group
from hastack.model.state import ClusterState

__all__ = [
    "CaseResult",
    "CaseRun",
    "Comparison",
    "Placement",
    "Schedule",
    "case_files",
    "compare",
    "describe",
    "figures",
    "run_case",
]

Placement = dict[str, Counter[tuple[str, str]]]
Schedule = Callable[[ClusterConfig, ClusterState], Any]


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


@dataclass(frozen=True)
class Comparison:
    """What a scheduled case was compared on, for printing it in full."""

    imported: CibImport
    summary: Summary
    pacemaker: Placement
    hastack: Placement
    plan: Any


@dataclass(frozen=True)
class CaseRun:
    case: CaseResult
    imported: CibImport | None = None  # None when the CIB did not import
    compared: Comparison | None = None  # None when the case was not scheduled


def case_files(cases_dir: Path) -> list[tuple[Path, Path]]:
    """Every case's CIB and the summary beside it (which may be missing), by name."""
    return [
        (xml, cases_dir / "summary" / f"{xml.stem}.summary")
        for xml in sorted((cases_dir / "xml").glob("*.xml"))
    ]


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


def _hastack_placement(result: CibImport, plan: Any) -> Placement:
    out: Placement = {}
    for a in plan.assignments:
        rsc = result.pacemaker_name(base_name(a.primitive))
        counter = out.setdefault(rsc, Counter())
        role = a.role.value if hasattr(a.role, "value") else str(a.role)
        if a.node is not None and role != "Stopped":
            counter[(result.pacemaker_name(a.node), role)] += 1
    return out


def describe(counter: Counter[tuple[str, str]]) -> str:
    """A primitive's placement as one line: "n1 Started, n2 Unpromoted x2" or "stopped"."""
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
            diffs.append(f"{rsc}: pacemaker {describe(want)}, hastack {describe(got)}")
    return diffs


def run_case(
    xml_path: Path, summary_path: Path, schedule: Schedule | None, wall_now: float
) -> CaseRun:
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
        return CaseRun(case)
    case.imported = True
    case.unsupported = result.unsupported
    case.unsupported_features = tuple(sorted(result.unsupported_features))
    case.features = tuple(sorted(result.features))
    if schedule is None or not case.supported or summary is None:
        return CaseRun(case, result)
    started = time.perf_counter()
    try:
        plan = schedule(result.config, result.state)
    except Exception as exc:  # a bug in the scheduler is a result here, not a crash
        case.schedule_seconds = time.perf_counter() - started
        case.schedule_error = f"{type(exc).__name__}: {exc}"
        return CaseRun(case, result)
    case.schedule_seconds = time.perf_counter() - started
    case.scheduled = True
    members, promotable = _structure(result)
    pacemaker = _normalise(placement(summary.revised, members), promotable)
    hastack = _normalise(_hastack_placement(result, plan), promotable)
    configured = {result.pacemaker_name(p.primitive) for p in result.config.primitives()}
    case.diffs = compare(pacemaker, hastack, configured)
    return CaseRun(case, result, Comparison(result, summary, pacemaker, hastack, plan))


def _counts(values: list[tuple[str, ...]]) -> Counter[str]:
    counter: Counter[str] = Counter()
    for tags in values:
        counter.update(set(tags))
    return counter


def figures(cases: list[CaseResult], elapsed: float, have_scheduler: bool) -> dict[str, Any]:
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
        "by_feature": {tag: by_feature(cases, tag) for tag in REPORTED_FEATURES},
        "elapsed_seconds": elapsed,
    }


# Features whose progress the report shows on a line of their own.
REPORTED_FEATURES = ("remote", "guest", "container", "bundle")


def by_feature(cases: list[CaseResult], tag: str) -> dict[str, Any]:
    """The cases that use a feature: how many, supported, matching, and why the others are
    left out (the unsupported features they have, each counted once per case)."""
    using = [c for c in cases if tag in c.features or tag in c.unsupported_features]
    left_out = _counts([c.unsupported_features for c in using if c.unsupported])
    return {
        "cases": len(using),
        "supported": sum(c.supported for c in using),
        "matching": sum(c.supported and c.matching for c in using),
        "left_out_for": dict(left_out.most_common()),
    }
