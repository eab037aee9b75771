"""Agreement with Pacemaker on its own scheduler regression cases: the figures of
bench/cts_report.py may not fall.

Today 374 of the cases are supported (imported with nothing left out) and 366 of those end
with every primitive where Pacemaker puts it. A supported case that does not match and is not
one of the known differences below fails the test, named with its first difference; so does
a drop in the number of supported cases, named by the unsupported features that grew and the
cases that have nothing else left out (the repository keeps figures, not a list of cases).
When a figure improves, the test says so in a warning: raise it here.

The cases are Pacemaker's data (GPL), read where they are — `../shared/pacemaker-cts` beside
the repository, or `HASTACK_CTS_DIR` — and never copied in. Without them the test skips.

The comparison is bench/cts/compare.py, the core that bench/cts_report.py prints from, so the
report and this test cannot disagree on what "supported" and "matching" mean. It lives in
bench/ rather than src/hastack because it reads files and Pacemaker's summary format:
tooling around reference data, not part of hastack (hastack.cib stays pure).
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import pytest

from hastack.scheduler import schedule

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from cts.compare import CaseResult, by_feature, case_files, run_case  # noqa: E402

CASES = Path(os.environ.get("HASTACK_CTS_DIR") or REPO.parent / "shared" / "pacemaker-cts")

SUPPORTED = 374
MATCHING = 366
# The supported cases where hastack ends elsewhere than Pacemaker today
# (`bench/cts_report.py --case NAME` shows each difference in full).
KNOWN_MISMATCHES = frozenset(
    {
        "764",
        "bug-5025-4",
        "inc6",
        "leftover-pending-monitor",
        "partial-live-migration-multiple-active",
        "pending-node-no-uname",
        "probe-4",
        "stonith-4",
    }
)
# Why the other cases are not supported today: feature -> cases it is left out of.
UNSUPPORTED_FEATURES = {
    "ticket": 82,
    "bundle": 36,
    "guest": 14,
    "partial-migration": 13,
    "node-health": 9,
    "require-all": 9,
    "hard-error": 5,
    "template-ref": 5,
    "tag": 4,
    "container": 4,
    "no-quorum-fence": 4,
    "group-flags": 3,
    "on-fail-stop": 2,
    "node-attribute-coloc": 2,
    "rsc-pattern": 2,
    "date-rule": 2,
    "meta-rule": 2,
    "shutdown-lock": 2,
    "node-score": 1,
    "nested-rule": 1,
    "rule-other": 1,
}
_SHOWN = 10  # cases named per grown feature


@pytest.fixture(scope="module")
def cases() -> list[CaseResult]:
    if not (CASES / "xml").is_dir():
        source = "HASTACK_CTS_DIR" if os.environ.get("HASTACK_CTS_DIR") else "the default"
        pytest.skip(
            f"Pacemaker's regression cases not found: no {CASES / 'xml'} ({source}); "
            "they are kept outside the repository, set HASTACK_CTS_DIR to their folder"
        )
    wall_now = time.time()
    return [run_case(xml, summary, schedule, wall_now).case for xml, summary in case_files(CASES)]


def test_every_case_imports(cases: list[CaseResult]) -> None:
    # The importer is total: a well-formed CIB always converts, with what it left out listed.
    assert {c.name: c.import_error for c in cases if not c.imported} == {}


def test_no_supported_case_is_lost(cases: list[CaseResult]) -> None:
    supported = sum(c.supported for c in cases)
    if supported > SUPPORTED:
        warnings.warn(f"{supported} cases supported: raise SUPPORTED to it", stacklevel=1)
    if supported >= SUPPORTED:
        return
    now = Counter(tag for c in cases if c.unsupported for tag in set(c.unsupported_features))
    grown = {tag for tag, n in now.items() if n > UNSUPPORTED_FEATURES.get(tag, 0)}
    lines = [f"{supported} cases supported, {SUPPORTED} before"]
    lines += [f"  {c.name} does not import: {c.import_error}" for c in cases if not c.imported]
    for tag in sorted(grown, key=lambda tag: UNSUPPORTED_FEATURES.get(tag, 0)):
        # A case that lost its support has only grown features; with a feature that is new
        # they are exactly the lost cases, with an old one they are candidates.
        suspects = [
            c
            for c in cases
            if tag in c.unsupported_features and set(c.unsupported_features) <= grown
        ]
        before = UNSUPPORTED_FEATURES.get(tag, 0)
        lines.append(f"  {tag}: left out of {now[tag]} cases ({before} before), among them")
        lines += [f"    {c.name}: {c.unsupported[0]}" for c in suspects[:_SHOWN]]
        if len(suspects) > _SHOWN:
            lines.append(f"    and {len(suspects) - _SHOWN} more")
    pytest.fail("\n".join(lines))


def test_supported_cases_end_where_pacemaker_ends(cases: list[CaseResult]) -> None:
    supported = [c for c in cases if c.supported]
    matching = sum(c.matching for c in supported)
    differing = {
        c.name: c.schedule_error or (c.diffs[0] if c.diffs else "not scheduled (no summary)")
        for c in supported
        if not c.matching and c.name not in KNOWN_MISMATCHES
    }
    fixed = sorted(c.name for c in supported if c.matching and c.name in KNOWN_MISMATCHES)
    if fixed:
        warnings.warn(
            f"now matching Pacemaker: {', '.join(fixed)}; remove from KNOWN_MISMATCHES "
            f"and raise MATCHING ({matching} now)",
            stacklevel=1,
        )
    assert differing == {}, "not where Pacemaker ends (and not known to differ):\n" + "\n".join(
        f"  {name}: {why}" for name, why in sorted(differing.items())
    )
    assert matching >= MATCHING, (
        f"{matching} supported cases match, {MATCHING} before: cases stopped being supported "
        "(test_no_supported_case_is_lost names them)"
    )


def test_remote_node_cases_are_supported_and_agree(cases: list[CaseResult]) -> None:
    # Every case with remote nodes (connection resources, type=remote nodes) is supported
    # unless something else in it is not (bundles, guests, ...), and every supported one
    # ends where Pacemaker ends.
    remote = by_feature(cases, "remote")
    assert "remote" not in remote["left_out_for"], remote
    assert remote["supported"] >= 17, remote
    assert remote["matching"] == remote["supported"], remote
