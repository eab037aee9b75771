"""A soak of RabbitMQ under OpenStack's own client: at least 100 random faults, bounded in time.

    flock /tmp/hastack-lab.lock .venv/bin/python bench/rabbitmq_soak.py [--faults 110] [--slot 5.5]
    scripts/test -m 'lab and slow' tests/test_rabbitmq_soak.py     (the same, judged)

Root only. scenarios/rabbitmq-rpc-crash.yaml's cluster and oslo.messaging load (RPC calls at
10/s, notifications at 5/s, the README's settings), with a nemesis of `--faults` random faults
one every `--slot` seconds, one node at a time: a node's power loss (booted again half a slot
later), its broker killed (hastack restarts it), a partition of one node from the others
(healed half a slot later), or a pause of the whole host (resumed after 2 s). A node hit is
not waited for: the next fault may strike another node before the last one is back, so the
cluster loses its majority at times and must always come back by itself. 110 faults are
scheduled so that at least 100 are carried out: a kill finds no broker on a node still
starting (2 to 9 of 100–110 in five runs).

After the last fault's repair the load goes on until the cluster serves again — the
scenario's `serve-again`: every broker reports `running` and the RPC servers run — at most
RECOVER seconds, then TAIL more seconds, and ends; the bench measures "served again" as the
first successful RPC call after that moment, from the last repair. The load, recovery
window included, is bounded by BOUND (so that the run fits a 15-minute lab hold).
Prints the faults, the confirmed notifications and how many were lost, the RPC calls and the
longest RPC outage, and how long after the last repair the cluster served again; exits 1
when a confirmed notification was lost, the cluster did not serve again within RECOVER, or
fewer than 100 faults were carried out.

The notifications are read back by this program, after the run, whatever the load's client
did: every `enqueue` the client recorded `ok` (the broker confirmed it) is looked for in what
the servers consumed (the files they append to under the run's `consumed/`). One confirmed
and never consumed is lost — also when the cluster stopped serving before the servers could
consume it: then the bench says so, and fails. (Before 2026-12-07 it relied on the client's
own read-back, which a client killed at its bound never wrote: "loss unknown".)
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import itertools
import json
import os
import random
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hastack.checkers import Op, pair_ops, parse_history
from hastack.lab.scenario import Scenario, ScenarioResult, load_scenario, run_scenario

SCENARIO = Path(__file__).parent.parent / "scenarios" / "rabbitmq-rpc-crash.yaml"
NODES = ("n1", "n2", "n3")
FAULTS = ("crash", "kill", "partition", "pause")
BOUND = 750.0  # seconds of load at most, the recovery window included
SCHEDULED = 110  # faults scheduled: at least 100 carried out (see above)
AT_LEAST = 100  # faults carried out, as issue 15 asks
# After the last repair: the cluster must serve again within RECOVER (force-boot-after, 60 s,
# plus a broker's boot and the RPC servers' reconnection), and the load goes on TAIL seconds
# once it does (a call gives up after 15 s).
RECOVER = 120.0
TAIL = 15.0


def nemesis(faults: int, slot: float, rng: random.Random) -> list[dict[str, object]]:
    steps: list[dict[str, object]] = []
    recent: list[str] = []  # the nodes hit by the last two faults
    for i in range(faults):
        at = 10.0 + i * slot
        kind = rng.choice(FAULTS)
        # A kill needs a broker to kill: one on a node hit in the last two slots is likely
        # still starting (the first 100-fault run: 9 of 18 kills found none).
        node = rng.choice([n for n in NODES if kind != "kill" or n not in recent])
        recent = [*recent, node][-2:]
        if kind == "crash":
            steps += [{"at": at, "op": "crash", "node": node},
                      {"at": at + slot / 2, "op": "start", "node": node}]  # fmt: skip
        elif kind == "kill":
            steps.append({"at": at, "op": "kill", "node": node, "process": "rabbit"})
        elif kind == "partition":
            steps += [{"at": at, "op": "partition", "groups": f"{node} | @rest"},
                      {"at": at + slot / 2, "op": "heal"}]  # fmt: skip
        else:
            steps += [{"at": at, "op": "pause", "node": node},
                      {"at": at + 2.0, "op": "resume", "node": node}]  # fmt: skip
    return steps


def soak_scenario(faults: int = SCHEDULED, slot: float = 5.5, seed: int = 1) -> Scenario:
    """The soak as a scenario; ValueError when its load would exceed the bound."""
    duration = 10.0 + faults * slot + RECOVER + TAIL
    if duration > BOUND:
        raise ValueError(f"{faults} faults × {slot:g}s and the {RECOVER:g} s recovery window "
                         f"exceed the {BOUND:g} s bound")  # fmt: skip
    data = load_scenario(SCENARIO).model_dump(by_alias=True)
    data["name"] = "rabbitmq-soak"
    data["description"] = f"{faults} random faults against RabbitMQ under oslo.messaging load"
    data["workloads"][0]["duration"] = duration
    # The read-back: the cluster served again (or the run failed anyway) when the load ends.
    data["workloads"][0]["final-timeout"] = 60.0
    data["serve-again"] = {"within": RECOVER, "tail": TAIL}
    data["nemesis"] = nemesis(faults, slot, random.Random(seed))
    data["expect"] = {"rpc-timeouts": None}
    data["cluster"]["properties"]["stonith-enabled"] = False  # partitions must not power off
    return Scenario.model_validate(data)


@dataclass(frozen=True)
class Figures:
    scheduled: int
    faults: dict[str, int]  # carried out, by kind
    confirmed: int
    consumed: int  # distinct confirmed notifications the servers consumed
    lost: int  # confirmed and never consumed
    twice: int  # consumed more than once (at-least-once delivery: not a loss)
    drained: bool  # the client's own read-back ended (it was not killed at its bound)
    serving: bool  # served again (a call ok once every broker ran) within RECOVER
    brokers_back: float | None  # s from the last repair until every broker ran (None: never)
    served_again: float | None  # s from the last repair until the first call ok after that
    calls_after: tuple[int, int]  # calls invoked once every broker ran: all, ok
    brokers: tuple[tuple[str, str, str, float], ...]  # last reports: node, health, why, age
    calls: int
    calls_ok: int
    timeouts: int
    longest_outage: float
    notes: tuple[str, ...]

    def lines(self) -> list[str]:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items()))
        out = [
            f"faults: {sum(self.faults.values())} of {self.scheduled} scheduled ({kinds})",
            f"notifications confirmed: {self.confirmed}, read back {self.consumed}, "
            f"lost: {self.lost}, consumed twice: {self.twice}"
            + ("" if self.drained else " (read back by the bench: the client was killed at its "
               "bound before its own read-back)"),
            f"RPC calls: {self.calls}, ok {self.calls_ok}, MessagingTimeout {self.timeouts}, "
            f"longest RPC outage {self.longest_outage:.1f}s",
            self.recovery_line(),
            "brokers as the run ended: " + ("; ".join(
                f"{n} {h}" + (f" ({why})" if why else "") + f", {age:.0f}s old"
                for n, h, why, age in self.brokers) or "no report"),
        ]  # fmt: skip
        return out + [f"note: {n}" for n in self.notes]

    def recovery_line(self) -> str:
        n, ok = self.calls_after
        if self.brokers_back is None:
            return (f"the cluster did NOT serve again: not every broker ran within "
                    f"{RECOVER:g}s of the last repair")  # fmt: skip
        back = f"every broker running {self.brokers_back:.1f}s after the last repair"
        if self.served_again is None:
            return f"the cluster did NOT serve again: {back}, but no RPC call succeeded after"
        verdict = "served again" if self.serving else f"did NOT serve again within {RECOVER:g}s"
        return (
            f"the cluster {verdict}: {back}, the first RPC call ok after it "
            f"{self.served_again:.1f}s after the last repair ({n} calls from then, {ok} ok)"
        )


def consumed_values(directory: Path) -> list[int]:
    """Every notification the servers consumed (their `consumed/<host>.jsonl`), repeats kept."""
    out: list[int] = []
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                out.append(int(json.loads(line)["value"]))
    return out


def last_reports(status: Path) -> tuple[tuple[str, str, str, float], ...]:
    """Each broker's last report in the run's status feed (its last line, written as the run
    ended): (node, health, reason, age in seconds)."""
    try:
        with status.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 200_000))
            lines = f.read().decode(errors="replace").splitlines()
        last = json.loads(lines[-1])
    except (OSError, ValueError, IndexError):
        return ()
    out = []
    for rabbit in last.get("rabbitmq") or []:
        for node, report in sorted((rabbit.get("reports") or {}).items()):
            age = float(last.get("collected_at") or 0) - float(report.get("at") or 0)
            out.append((node, str(report.get("health")), str(report.get("reason") or ""), age))
    return tuple(out)


def recovery(
    result: ScenarioResult, calls: list[Op]
) -> tuple[float | None, float | None, tuple[int, int], float | None]:
    """From the run's `serve-again.json`: seconds from the last repair until every broker
    ran, until the first call ok after that; the calls invoked from then (all, ok); and when
    the load ended (wall clock; None when not recorded)."""
    try:
        record = json.loads((result.results / "serve-again.json").read_text())
    except (OSError, ValueError):
        return None, None, (0, 0), None
    last, at = float(record["last_step"]), record.get("serving_at")
    ended = record.get("load_ended")
    if at is None:
        return None, None, (0, 0), ended
    after = [o for o in calls if o.invoked >= at]
    first = min((o.completed for o in calls if o.ok and (o.completed or 0) >= at), default=None)
    return (
        at - last,
        None if first is None else first - last,
        (len(after), sum(1 for o in after if o.ok)),
        ended,
    )


def figures(scenario: Scenario, result: ScenarioResult) -> Figures:
    history = parse_history((result.results / "history.jsonl").read_text().splitlines())
    ops = pair_ops(history)
    calls = [o for o in ops if o.f == "call"]
    brokers_back, served_again, calls_after, ended = recovery(result, calls)
    # The longest time without a successful call, over the whole load: from its start to
    # the first success, between successes, and from the last one to its end (a call left
    # hanging when the load ended counts to the end).
    start = min((o.invoked for o in calls), default=0.0)
    end = start + scenario.workloads[0].duration
    if ended is not None:
        end = min(end, float(ended))  # ended early: the cluster served again
    ok = sorted(min(o.completed or end, end) for o in calls if o.ok)
    longest = max((b - a for a, b in itertools.pairwise([start, *ok, end])), default=0.0)
    confirmed = {o.value for o in ops if o.f == "enqueue" and o.ok}
    consumed = collections.Counter(consumed_values(result.results / "consumed"))
    # The faults carried out (the lab's record): a kill finds no broker on a node that is down.
    done = [json.loads(x) for x in (result.results / "nemesis.jsonl").read_text().splitlines()]
    return Figures(
        scheduled=sum(1 for s in scenario.nemesis if s.op in FAULTS),
        faults=dict(collections.Counter(str(e["f"]) for e in done if e.get("f") in FAULTS)),
        confirmed=len(confirmed),
        consumed=len(confirmed & set(consumed)),
        lost=len(confirmed - set(consumed)),
        twice=sum(1 for v, n in consumed.items() if n > 1),
        drained=any(o.f == "drain" and o.ok for o in ops),
        serving=served_again is not None and served_again <= RECOVER,
        brokers_back=brokers_back,
        served_again=served_again,
        calls_after=calls_after,
        brokers=last_reports(result.results / "status.jsonl"),
        calls=len(calls),
        calls_ok=len(ok),
        timeouts=sum(1 for o in calls if o.error == "MessagingTimeout"),
        longest_outage=longest,
        notes=tuple(result.notes),
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--faults", type=int, default=SCHEDULED)
    parser.add_argument("--slot", type=float, default=5.5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--results", default=None, help="keep the run's records here (default: removed)"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("the lab needs root", file=sys.stderr)
        return 1
    try:
        scenario = soak_scenario(args.faults, args.slot, args.seed)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="hastack-soak-") as tmp:
        where = Path(args.results) if args.results else Path(tmp)
        result = run_scenario(scenario, where, say=lambda m: print(m, flush=True))
        f = figures(scenario, result)
    print("\n".join(f.lines()))
    done = sum(f.faults.values())
    # 0 lost (of at least 100 faults), the cluster serving again within RECOVER of the last
    # repair, is the pass; the other timings are figures.
    return 0 if f.serving and f.lost == 0 and done >= AT_LEAST else 1


if __name__ == "__main__":
    sys.exit(main())
