"""What the `hastack:rabbitmq` agent does next. Pure: every input is data.

* `decide_start` — restart from the node's own data, force-boot, found the cluster, join a
  running member (after setting forgotten data aside), or wait;
* `decide_forget` — which nodes the cluster must forget (fenced **and** declared gone), and
  which forgets to retry;
* `decide_grow` — which running members quorum queues must be grown onto;
* `monitor_verdict` — running, paused in a minority, partitioned, hung, or not running;
* `decide_boot_exit` — a broker that exited while its start booted it: boot it again, or
  fail the start;
* `decide_force_boot` — a broker waiting for its peers' tables while none serves: which of the
  waiting members force-boots (the one that served last), and when.

Each decision carries a one-line reason. docs/rabbitmq.md has the rules and why they are
safe; the tests replay them from golden tables (tests/golden/rabbitmq/).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from hastack.rabbitmq.status import BrokerReport, BrokerStatus, QueueInfo

__all__ = [
    "BootExit",
    "ForceBoot",
    "Health",
    "MemberState",
    "NodeFacts",
    "Start",
    "StartDecision",
    "Verdict",
    "decide_boot_exit",
    "decide_force_boot",
    "decide_forget",
    "decide_grow",
    "decide_start",
    "is_gone",
    "monitor_verdict",
]


class MemberState(enum.StrEnum):
    """The etcd record of one node (`rabbitmq/<rsc>/nodes/<node>`)."""

    NONE = "none"  # never joined, as far as etcd knows
    JOINED = "joined"
    FORGOTTEN = "forgotten"


@dataclass(frozen=True, slots=True)
class NodeFacts:
    """What the store says about one node of the RabbitMQ cluster."""

    record: MemberState = MemberState.NONE
    record_revision: int = 0  # the revision of that record (0: none)
    online: bool = False  # a hastack member now
    running: bool = False  # online, and its status reports the broker instance running
    # Its broker's own last report (fresh) says it serves: not merely running while it waits
    # in mnesia for its peers' tables (the instance is Started then too).
    serving: bool = False
    # The revision of its last successful fencing after it last joined hastack (None: not
    # fenced in its current or last life); its wall time, for `forget-after`.
    fenced_revision: int | None = None
    fenced_at: float | None = None
    removed_revision: int | None = None  # `hastack node remove`: the removal's revision


class Start(enum.StrEnum):
    RESTART = "restart"
    FORCE_BOOT = "force-boot"
    FOUND = "found"
    JOIN = "join"
    WAIT = "wait"


@dataclass(frozen=True, slots=True)
class StartDecision:
    action: Start
    reason: str
    peer: str | None = None  # JOIN: the member to join
    set_aside: bool = False  # JOIN: move the node's forgotten data aside first


def is_gone(facts: NodeFacts, *, now: float, forget_after: float | None) -> bool:
    """Fenced and declared gone: removed by the operator after it last joined the RabbitMQ
    cluster, or fenced for longer than `forget-after`. Offline in both cases."""
    if facts.online or facts.fenced_revision is None:
        return False
    if facts.removed_revision is not None and facts.removed_revision > facts.record_revision:
        return True
    return (
        forget_after is not None
        and facts.fenced_at is not None
        and now - facts.fenced_at >= forget_after
    )


def decide_start(
    me: str,
    *,
    has_data: bool,
    nodes: Mapping[str, NodeFacts],
    founder: str | None,
    now: float,
    forget_after: float | None = None,
    force: str | None = None,
) -> StartDecision:
    """How node `me` starts its broker. `nodes` covers every node with a record or a running
    broker (`me` included or not); `founder` is the `cluster` record's node, if any; `force`:
    why its last monitor asked for a forced boot (`decide_force_boot`), if it did."""
    mine = nodes.get(me, NodeFacts())
    others = {n: f for n, f in sorted(nodes.items()) if n != me}
    running = [n for n, f in others.items() if f.running and f.record is MemberState.JOINED]
    joined = [n for n, f in others.items() if f.record is MemberState.JOINED]
    forgotten = mine.record is MemberState.FORGOTTEN
    if has_data and not forgotten:
        waiting_for = [
            n for n in joined if not is_gone(others[n], now=now, forget_after=forget_after)
        ]
        if force is not None and not any(others[n].serving for n in running):
            # Only while no member serves: with one serving, the tables come from it (a forced
            # load beside a serving copy would fork the metadata). One that runs but waits for
            # its peers' tables is what the forced boot is for.
            return StartDecision(Start.FORCE_BOOT, f"asked by its monitor: {force}")
        if joined and not waiting_for:
            gone = ", ".join(joined)
            return StartDecision(
                Start.FORCE_BOOT,
                f"every other member is gone ({gone}): boot without waiting for them",
            )
        if running:
            return StartDecision(
                Start.RESTART, f"restart from its own data; {', '.join(running)} running"
            )
        return StartDecision(
            Start.RESTART,
            "restart from its own data"
            + (f"; waits for {', '.join(waiting_for)} as mnesia does" if waiting_for else ""),
        )
    if running:
        peer = running[0]
        if forgotten and has_data:
            return StartDecision(
                Start.JOIN,
                f"the cluster forgot this node: set its data aside and join {peer}",
                peer=peer,
                set_aside=True,
            )
        why = "the cluster forgot this node" if forgotten else "a blank node"
        return StartDecision(Start.JOIN, f"{why}: join {peer}", peer=peer)
    if not joined and founder in (None, me) and not forgotten:
        return StartDecision(Start.FOUND, "no member anywhere: found the cluster")
    what = "a node the cluster forgot" if forgotten else "a blank node"
    if joined:
        return StartDecision(
            Start.WAIT,
            f"members {', '.join(joined)} exist but none runs: {what} can only join a "
            "running member",
        )
    if founder not in (None, me):
        return StartDecision(Start.WAIT, f"{founder} is founding the cluster: wait to join it")
    return StartDecision(Start.WAIT, f"no member is recorded: {what} waits for one")


def decide_forget(
    nodes: Mapping[str, NodeFacts],
    *,
    me: str,
    listed: Iterable[str],
    now: float,
    forget_after: float | None = None,
) -> list[tuple[str, str]]:
    """(node, reason) for every node the running broker of `me` must forget now, given the
    nodes its cluster lists (`listed`, hastack names): gone and still recorded as joined
    (claim it, then forget), or recorded forgotten while the broker still lists it and it is
    offline (a forget interrupted after its claim: retry it). Online, a node recorded
    forgotten is joining again (its record says "joined" once the join is done): forgotten
    again in the middle of its join, it failed with `inconsistent_cluster` (R4, 2026-12-07)."""
    out = []
    members = set(listed)
    for node, facts in sorted(nodes.items()):
        if node == me or node not in members:
            continue
        if facts.record is MemberState.FORGOTTEN:
            if not facts.online:
                out.append((node, "recorded forgotten but still a member: retry the forget"))
        elif facts.record is MemberState.JOINED and is_gone(
            facts, now=now, forget_after=forget_after
        ):
            removed = (
                facts.removed_revision is not None
                and facts.removed_revision > facts.record_revision
            )
            why = (
                "removed by the operator"
                if removed
                else f"fenced over {forget_after:g}s ago (forget-after)"
            )
            out.append((node, f"fenced, {why}"))
    return out


def decide_grow(queues: Iterable[QueueInfo], running: Sequence[str], size: int) -> list[str]:
    """The running members that quorum queues with fewer than `size` members lack, in order:
    each is grown onto with `rabbitmq-queues grow NODE all`."""
    wanted: list[str] = []
    for q in queues:
        if q.type != "quorum" or len(q.members) >= size:
            continue
        for node in running:
            if node not in q.members and node not in wanted:
                wanted.append(node)
    return sorted(wanted)


class Health(enum.StrEnum):
    RUNNING = "running"
    PAUSED = "paused"  # pause_minority at work: not serving, not a failure
    FAILED = "failed"
    NOT_RUNNING = "not-running"


@dataclass(frozen=True, slots=True)
class Verdict:
    health: Health
    reason: str = ""
    details: Mapping[str, str] = field(default_factory=dict)


def monitor_verdict(
    *,
    process_alive: bool,
    probe_error: str | None,
    broker: BrokerStatus | None,
    status_error: str | None = None,
    vm_answers: bool = True,
    booting: bool = False,
) -> Verdict:
    """The monitor's judgement. `probe_error`: the AMQP probe's failure (None: answered in
    time); `broker`: the parsed cluster status (None: `status_error` says why not);
    `vm_answers`: the Erlang VM answered the CLI in time (it did not hang), whatever it said;
    `booting`: the broker's own output shows a boot not finished (it may wait for its peers'
    Mnesia tables, or run its boot steps slowly on a busy machine)."""
    if not process_alive:
        return Verdict(Health.NOT_RUNNING)
    if broker is None:
        if probe_error is None:  # it serves AMQP: the CLI's trouble is not the broker's
            return Verdict(Health.RUNNING, f"cluster status unavailable: {status_error}")
        if vm_answers:
            # The VM answers but the application does not serve: pause_minority stopped it
            # (3.10's cluster_status needs the application, so this is all one can see).
            return Verdict(
                Health.PAUSED, f"the application is stopped (paused in a minority?): {probe_error}"
            )
        return Verdict(Health.FAILED, f"no answer: {probe_error}; {status_error or ''}")
    disc = set(broker.disc_nodes) or {broker.node}
    running = set(broker.running_nodes)
    majority = len(disc) // 2 + 1
    if not broker.app_running:
        if len(running & disc) < majority:
            return Verdict(
                Health.PAUSED,
                f"paused in a minority: sees {', '.join(sorted(running)) or 'nothing'} "
                f"of {len(disc)} (pause_minority)",
            )
        if booting:
            # Booting, after a whole-cluster stop it waits for the tables of the member that
            # stopped last (RabbitMQ gives up by itself after its retries, and the process
            # ends; a hung VM is found by the CLI's timeout). A restart would only boot
            # again: the crash-all scenario's restarts of such nodes kept the cluster from
            # forming within the run.
            return Verdict(Health.PAUSED, "booting: its application has not started yet")
        return Verdict(Health.FAILED, "the rabbit application is not running")
    if broker.partitions:
        others = sorted(broker.partitions)
        # The side with fewer running nodes restarts; a tie goes to the later name.
        mine = len(running)
        theirs = len(disc - running)
        if mine < theirs or (mine == theirs and broker.node > min(others)):
            return Verdict(
                Health.FAILED, f"partitioned from {', '.join(others)} on the minority side"
            )
        return Verdict(
            Health.RUNNING,
            f"partitioned from {', '.join(others)}; the minority side restarts",
        )
    if len(running & disc) < majority:
        # pause_minority is acting: its listener may already be closed while the CLI still
        # says the application runs (the soak's first run restarted such a node, and the
        # node that started meanwhile paused in its turn). A restart would pause again.
        probe = f" (probe: {probe_error})" if probe_error is not None else ""
        return Verdict(
            Health.PAUSED,
            f"running in a minority ({len(running)} of {len(disc)}): pausing{probe}",
        )
    if probe_error is not None:
        return Verdict(Health.FAILED, f"accepts connections but {probe_error}")
    return Verdict(Health.RUNNING)


# ---- a boot that ends early, a boot that waits for ever ----------------------------------------

BOOT_ATTEMPTS = 3  # boots one start makes of a broker that exits while it boots


@dataclass(frozen=True, slots=True)
class BootExit:
    again: bool  # boot the broker again within the same start
    reason: str


def decide_boot_exit(cause: str, last_line: str, boots: int, *, config_error: bool) -> BootExit:
    """The broker exited while the start booted it (`boots`: how many boots this start made,
    this one included). A cause a new boot would meet again (`config_error`: a port taken, a
    cookie rejected) fails the start at once. Anything else — killed (the soak's nemesis kills
    brokers 3 s into their boot), or mnesia giving up its wait for the peers' tables — is
    what a start is for: boot again, up to BOOT_ATTEMPTS. Pacemaker makes a failed start fatal
    on the node (start-failure-is-fatal): a broker killed while booting must not ban the node
    that holds the tables its peers wait for."""
    what = cause or last_line or "no reason printed"
    if config_error:
        return BootExit(False, f"rabbitmq-server exited: {what}")
    if boots >= BOOT_ATTEMPTS:
        return BootExit(False, f"rabbitmq-server exited while booting, {boots} times: {what}")
    return BootExit(True, f"rabbitmq-server exited while booting ({what}): boot {boots + 1} of "
                          f"{BOOT_ATTEMPTS}")  # fmt: skip


@dataclass(frozen=True, slots=True)
class ForceBoot:
    force: bool
    reason: str


def decide_force_boot(
    me: str,
    *,
    members: Iterable[str],
    reports: Mapping[str, BrokerReport],
    waiting_since: float,
    now: float,
    patience: float,
    fresh: float,
) -> ForceBoot:
    """`me`'s broker has waited since `waiting_since` for its peers' Mnesia tables. RabbitMQ
    boots a member only with the tables of the member that stopped last; if that one cannot
    come back (its start failed, its host is gone) the others wait, give up after 5 min, are
    restarted and wait again — the soak's end state. So after `patience` with no member
    serving, one waiting member force-boots (`rabbitmqctl force_boot`: it loads its own
    tables) and the others take the tables from it: the one that **served last** by its
    reports (`served_at`; ties: the first by name), which is the nearest hastack can tell to
    "stopped last" — its tables are the newest of those at hand. A member counts as waiting or
    serving only by a report fresher than `fresh` seconds (`members`: every joined member,
    `me` included; `reports` by hastack node name, `me`'s included)."""
    waited = now - waiting_since
    if waited < patience:
        return ForceBoot(False, f"waits for its peers' tables ({waited:.0f}s of {patience:g}s)")

    def is_fresh(node: str) -> bool:
        r = reports.get(node)
        return r is not None and now - r.at <= fresh

    others = sorted(n for n in set(members) if n != me)
    serving = [n for n in others if is_fresh(n) and reports[n].health == "running"]
    if serving:
        return ForceBoot(False, f"{', '.join(serving)} serves: the tables come from it")
    waiting = [me] + [n for n in others if is_fresh(n) and reports[n].waiting_since is not None]
    absent = [n for n in others if n not in waiting]

    def served(node: str) -> float:
        r = reports.get(node)
        return r.served_at if r is not None and r.served_at is not None else float("-inf")

    chosen = sorted(waiting, key=lambda n: (-served(n), n))[0]
    if chosen != me:
        return ForceBoot(False, f"{chosen} served last of those waiting: it force-boots")
    last = served(me)
    when = f" (at {last:.0f})" if last != float("-inf") else ""
    return ForceBoot(
        True,
        f"waited {waited:.0f}s for the tables of {', '.join(absent) or 'its peers'}, none "
        f"serves; waiting: {', '.join(sorted(waiting))}; this node served last{when}",
    )
