"""The writers checker: did two database nodes take writes at once?

The one-writer rule (docs/galera.md) sends every client write to one synced node at a time.
The `mysql-set` workload records, for each acknowledged insert, the node that executed it
(`@@wsrep_node_name`, stored in the row itself, so the final read knows it too) and the
server's clock when the statement began and just after it committed (read on the same
session; every lab host runs on one kernel clock). A node's *tenure* is a run of its writes,
merged while at most `gap` seconds separate the end of one from the beginning of the next.
Two tenures of different nodes that overlap are a moment with two writers: both nodes
executed writes within one span of time. A clean writer change — A's last write ends before
B's first begins, and A takes no more — never overlaps; writes that alternate between two
nodes, or that run on both at the same instant, do.

A write whose end was not read (the session died right after the commit) counts as a point
at its beginning: the checker never widens a window beyond what the server showed.

Two more checks read the same writes against the nemesis log:

* **writer-moved** — for each fault that took the writer away (crash, kill, pause of its
  host, or a partition that left it outside the largest group): the first write on another
  node, counted from the fault; and no write begun on the old writer after the fault until
  it came back. Valid when each moved within `limit`.
* **minority** — while a partition lasts, the nodes outside its largest group acknowledge
  no write (Galera's non-Primary component refuses them: ERROR 1047). Writes sent to a cut-
  off node's own address show it; valid when none of those begun inside a partition was
  acknowledged and at least one was refused.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hastack.checkers.history import CheckResult, pair_ops

__all__ = ["Tenure", "check_minority", "check_writer_moved", "check_writers", "tenures"]

GAP = 1.0  # seconds; a legitimate writer change back to a node takes far longer (a rejoin)


@dataclass(frozen=True, slots=True)
class Tenure:
    node: str
    start: float
    end: float
    writes: int

    def overlaps(self, other: Tenure) -> bool:
        return self.start <= other.end and other.start <= self.end


def _windows(history: Iterable[Mapping[str, Any]]) -> tuple[list[tuple[str, float, float]], int]:
    """(node, began, ended) of every acknowledged add, and how many had no node at all."""
    ops = pair_ops(history)
    rows: dict[str, Any] = {}
    for read in (o for o in ops if o.f == "read" and o.ok):
        found = read.extra.get("rows")
        if isinstance(found, Mapping):
            rows = dict(found)
    out: list[tuple[str, float, float]] = []
    unattributed = 0
    for op in ops:
        if op.f != "add" or not op.ok:
            continue
        node = op.extra.get("node")
        began = op.extra.get("began")
        ended = op.extra.get("ended")
        if node is None or began is None:
            row = rows.get(str(op.value))
            if isinstance(row, list | tuple) and len(row) >= 2:
                node, began, ended = row[0], row[1], None
        if not isinstance(node, str) or not isinstance(began, int | float):
            unattributed += 1
            continue
        end = float(ended) if isinstance(ended, int | float) else float(began)
        out.append((node, float(began), max(end, float(began))))
    return out, unattributed


def tenures(windows: Iterable[tuple[str, float, float]], gap: float = GAP) -> list[Tenure]:
    """Each node's writes merged into runs (at most `gap` seconds between them), in time order."""
    by_node: dict[str, list[tuple[float, float]]] = {}
    for node, began, ended in windows:
        by_node.setdefault(node, []).append((began, ended))
    out: list[Tenure] = []
    for node, spans in by_node.items():
        spans.sort()
        start, end = spans[0]
        count = 0
        for began, ended in spans:
            if began - end > gap:
                out.append(Tenure(node, start, end, count))
                start, end, count = began, ended, 0
            end = max(end, ended)
            count += 1
        out.append(Tenure(node, start, end, count))
    out.sort(key=lambda t: (t.start, t.node))
    return out


def check_writers(history: Iterable[Mapping[str, Any]], *, gap: float = GAP) -> CheckResult:
    windows, unattributed = _windows(history)
    if not windows:
        return CheckResult(
            "writers",
            None,
            "no acknowledged write says which node executed it: cannot judge",
            {"unattributed": unattributed},
        )
    runs = tenures(windows, gap)
    overlaps = [
        (a, b)
        for i, a in enumerate(runs)
        for b in runs[i + 1 :]
        if a.node != b.node and a.overlaps(b)
    ]
    nodes = sorted({t.node for t in runs})
    changes = sum(1 for a, b in itertools.pairwise(runs) if a.node != b.node)
    summary = (
        f"{len(windows)} acknowledged writes on {', '.join(nodes)}, {changes} writer "
        f"change(s): "
        + (f"{len(overlaps)} MOMENT(S) WITH TWO WRITERS" if overlaps else "one writer at a time")
    )
    return CheckResult(
        "writers",
        not overlaps,
        summary,
        {
            "writes": len(windows),
            "unattributed": unattributed,
            "changes": changes,
            "tenures": [
                {"node": t.node, "start": t.start, "end": t.end, "writes": t.writes} for t in runs
            ],
            "overlaps": [
                f"{a.node} wrote {a.start:.3f}-{a.end:.3f} ({a.writes}) while {b.node} wrote "
                f"{b.start:.3f}-{b.end:.3f} ({b.writes})"
                for a, b in overlaps
            ],
        },
    )


_TAKES_A_NODE = ("crash", "kill", "pause")


def _cut_off(nemesis: Iterable[Mapping[str, Any]]) -> list[tuple[float, float | None, set[str]]]:
    """(from, until, nodes outside the largest group) for every partition; until is None
    when it was never healed in the log."""
    out: list[tuple[float, float | None, set[str]]] = []
    for e in sorted(nemesis, key=lambda e: float(e["time"])):
        if e.get("f") == "partition":
            if out and out[-1][1] is None:
                out[-1] = (out[-1][0], float(e["time"]), out[-1][2])
            groups = [list(g) for g in e.get("groups", [])]
            largest = max(groups, key=len, default=[])
            out.append(
                (float(e["time"]), None, {str(n) for g in groups if g is not largest for n in g})
            )
        elif e.get("f") == "heal" and out and out[-1][1] is None:
            out[-1] = (out[-1][0], float(e["time"]), out[-1][2])
    return out


def check_writer_moved(
    history: Iterable[Mapping[str, Any]],
    nemesis: Iterable[Mapping[str, Any]],
    *,
    limit: float | None,
) -> CheckResult:
    windows, _ = _windows(history)
    writes = sorted(windows, key=lambda w: w[1])
    faults = sorted(nemesis, key=lambda e: float(e["time"]))
    moves: list[dict[str, Any]] = []
    problems: list[str] = []
    for n, e in enumerate(faults):
        t = float(e["time"])
        before = [w for w in writes if w[1] < t]
        if not before:
            continue
        writer = before[-1][0]
        if e.get("f") in _TAKES_A_NODE:
            hit = e.get("host") == writer
        elif e.get("f") == "partition":
            hit = any(writer in nodes for start, _, nodes in _cut_off([e]) if start == t)
        else:
            hit = False
        if not hit:
            continue
        # it is back at the next repair of its host (start, resume) or the next heal
        back = next(
            (float(x["time"]) for x in faults[n + 1 :]
             if (x.get("f") in ("start", "resume") and x.get("host") == writer)
             or (x.get("f") == "heal" and e.get("f") == "partition")),
            None,
        )  # fmt: skip
        elsewhere = next((w for w in writes if w[1] > t and w[0] != writer), None)
        if back is not None and (elsewhere is None or elsewhere[1] > back):
            # Nobody took over before it came back (every node was down: a power loss), and
            # the writes resumed there or elsewhere after its return: judged from there.
            elsewhere = next((w for w in writes if w[1] > back), None)
        # Writes on the old writer until it is back count against it after a partition or a
        # power loss. Not after a `kill` (the cluster restarts the process: no nemesis step
        # marks its return, and what the new server takes is legitimate) nor a `pause` (a
        # frozen node acknowledges nothing; what commits the moment it is resumed, before
        # the log's `resume` line, was under way before — `writers` judges any overlap).
        judged = e.get("f") in ("partition", "crash")
        late = [w for w in writes if judged and w[0] == writer and w[1] > t
                and (back is None or w[1] < back)]  # fmt: skip
        moved = None if elsewhere is None else elsewhere[1] - t
        moves.append(
            {"fault": f"{e.get('f')} {e.get('host') or ''}".strip(), "at": t, "writer": writer,
             "to": elsewhere[0] if elsewhere else None, "moved_after": moved,
             "writes_on_old_writer": len(late)}
        )  # fmt: skip
        if moved is None:
            problems.append(f"no write on another node after {e.get('f')} of writer {writer}")
        elif limit is not None and moved > limit:
            problems.append(f"the writer left {writer} {moved:.1f}s after the fault ({limit:g}s)")
        if late:
            problems.append(f"{writer} took {len(late)} write(s) after it was cut off")
    if not moves:
        return CheckResult("writer-moved", None, "no fault took the writer away")
    summary = "; ".join(
        f"{m['fault']}: writer {m['writer']} → {m['to'] or 'nobody'}"
        + (f" after {m['moved_after']:.1f}s" if m["moved_after"] is not None else "")
        for m in moves
    ) + (f" — {'; '.join(problems)}" if problems else "")
    return CheckResult(
        "writer-moved", not problems, summary, {"moves": moves, "problems": problems}
    )


def check_minority(
    history: Iterable[Mapping[str, Any]], nemesis: Iterable[Mapping[str, Any]]
) -> CheckResult:
    partitions = _cut_off(nemesis)
    if not partitions:
        return CheckResult("minority", None, "no partition in this run")
    ops = [o for o in pair_ops(history) if o.f == "add"]
    accepted: list[str] = []
    refused = 0
    for start, until, nodes in partitions:
        inside = [o for o in ops if o.invoked > start and (until is None or o.invoked < until)]
        for o in inside:
            node = o.extra.get("node")
            if o.ok and node in nodes:
                accepted.append(f"{o.value} on {node} at {o.invoked:.3f}")
            elif not o.ok and o.error and "1047" in o.error:
                refused += 1
    if accepted:
        valid: bool | None = False
    elif refused:
        valid = True
    else:
        valid = None
    summary = (
        f"{len(partitions)} partition(s): {refused} write(s) refused by a cut-off node (1047), "
        f"{len(accepted)} accepted"
        + ("" if valid is not None else ": nothing sent to a cut-off node, cannot judge")
    )
    return CheckResult("minority", valid, summary, {"refused": refused, "accepted": accepted})
