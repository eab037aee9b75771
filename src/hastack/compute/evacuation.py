"""Evacuation of a fenced compute's instances: the record and the decisions. Pure: no I/O,
time passed in (docs/compute.md, section 2).

    new_record(node, fenced_at, epoch, by) -> EvacuationRecord     written by the fence step
    plan_round(record, servers, host_back, now, parallel) -> Round  what the evacuator does next
    apply_results(record, round, results, now) -> EvacuationRecord  what it learnt

The record lives at `<prefix>/evacuate/<node>` and is the only memory of an evacuation: an
evacuator that starts (or moves to another controller) continues from it. Its states:

    pending   the host is fenced; its compute service is to be forced down and disabled,
              its evacuable instances evacuated
    done      every instance is evacuated or skipped; the host stays disabled until it is
              back — its agent a member again and its compute service heard by Nova since it
              was disabled, so that it boots disabled — then it is enabled and the record
              deleted

Calls to Nova fail: each failed instance is retried after a backoff (1 s doubling to 30 s), a
whole round that could not reach Nova likewise, and nothing is assumed from a call that
timed out: the next round reads where the instance is before asking again.
"""

from __future__ import annotations

import datetime
import enum
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from hastack.model.jsontext import json_object

__all__ = [
    "BACKOFF_FIRST",
    "BACKOFF_MAX",
    "CallResult",
    "EvacuationRecord",
    "InstanceProgress",
    "InstanceState",
    "RecordState",
    "Round",
    "Server",
    "apply_results",
    "backoff",
    "is_evacuable",
    "is_later",
    "new_record",
    "plan_round",
    "refenced",
]

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
DEFAULT_PARALLEL = 4
# An evacuation Nova accepted but that has not moved the instance off the host after this
# long is taken as failed and asked again (Nova reports a failed rebuild only on the server).
REQUEST_TIMEOUT = 60.0


class RecordState(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"


class InstanceState(enum.StrEnum):
    PENDING = "pending"  # on the fenced host, to be evacuated
    REQUESTED = "requested"  # Nova accepted the evacuation; not yet seen elsewhere
    EVACUATED = "evacuated"  # Nova places it on another host
    SKIPPED = "skipped"  # not evacuable: it stays down with its host
    FAILED = "failed"  # the last call failed; retried at next_try


_SETTLED = (InstanceState.EVACUATED, InstanceState.SKIPPED)


@dataclass(frozen=True, slots=True)
class InstanceProgress:
    state: InstanceState
    name: str = ""
    tries: int = 0
    next_try: float = 0.0
    error: str = ""
    host: str = ""  # where Nova placed it once evacuated


@dataclass(frozen=True, slots=True)
class EvacuationRecord:
    node: str
    state: RecordState
    fenced_at: float  # wall time of the fence that wrote it
    epoch: int  # the DC that fenced
    by: str  # the node that fenced
    host_disabled: bool = False  # Nova's service forced down and disabled
    # Nova's updated_at of that service as Nova answered the disable ("": unknown). Nova moves
    # it when the service reports, so a later one says the host's compute service runs again;
    # both are Nova's clock, so no clock here is compared with Nova's.
    disabled_mark: str = ""
    instances: Mapping[str, InstanceProgress] = field(default_factory=dict)
    listed: bool = False  # the host's instances have been read from Nova once
    attempts: int = 0  # rounds that could not reach Nova in a row
    next_try: float = 0.0
    last_error: str = ""
    updated: float = 0.0

    @property
    def pending_instances(self) -> list[str]:
        return sorted(i for i, p in self.instances.items() if p.state not in _SETTLED)

    def encode(self) -> bytes:
        data: dict[str, Any] = {
            "node": self.node,
            "state": self.state.value,
            "fenced_at": self.fenced_at,
            "epoch": self.epoch,
            "by": self.by,
            "host_disabled": self.host_disabled,
            "disabled_mark": self.disabled_mark,
            "listed": self.listed,
            "attempts": self.attempts,
            "next_try": self.next_try,
            "last_error": self.last_error,
            "updated": self.updated,
            "instances": {
                i: {
                    "state": p.state.value,
                    "name": p.name,
                    "tries": p.tries,
                    "next_try": p.next_try,
                    "error": p.error,
                    "host": p.host,
                }
                for i, p in sorted(self.instances.items())
            },
        }
        return json.dumps(data, sort_keys=True).encode()

    @staticmethod
    def decode(raw: bytes) -> EvacuationRecord:
        """ValueError when the value is not a record."""
        data = json_object(raw)
        try:
            instances = {
                str(i): InstanceProgress(
                    state=InstanceState(p["state"]),
                    name=str(p.get("name", "")),
                    tries=int(p.get("tries", 0)),
                    next_try=float(p.get("next_try", 0.0)),
                    error=str(p.get("error", "")),
                    host=str(p.get("host", "")),
                )
                for i, p in dict(data.get("instances", {})).items()
            }
            return EvacuationRecord(
                node=str(data["node"]),
                state=RecordState(data["state"]),
                fenced_at=float(data["fenced_at"]),
                epoch=int(data.get("epoch", 0)),
                by=str(data.get("by", "")),
                host_disabled=bool(data.get("host_disabled", False)),
                disabled_mark=str(data.get("disabled_mark", "")),
                instances=instances,
                listed=bool(data.get("listed", False)),
                attempts=int(data.get("attempts", 0)),
                next_try=float(data.get("next_try", 0.0)),
                last_error=str(data.get("last_error", "")),
                updated=float(data.get("updated", 0.0)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not an evacuation record ({exc})") from None


def new_record(node: str, fenced_at: float, epoch: int, by: str) -> EvacuationRecord:
    return EvacuationRecord(
        node=node,
        state=RecordState.PENDING,
        fenced_at=fenced_at,
        epoch=epoch,
        by=by,
        updated=fenced_at,
    )


def refenced(record: EvacuationRecord, fenced_at: float, epoch: int, by: str) -> EvacuationRecord:
    """The host was fenced again. A pending record keeps its progress (its instances are
    already being moved); a done one starts over, since the host may have run instances
    again before this fence."""
    if record.state is RecordState.PENDING:
        return replace(record, updated=fenced_at)
    return new_record(record.node, fenced_at, epoch, by)


@dataclass(frozen=True, slots=True)
class Server:
    """An instance as Nova lists it."""

    id: str
    name: str
    host: str
    status: str = "ACTIVE"
    evacuable: bool = False


def is_evacuable(
    metadata: Mapping[str, object], flavor_extra_specs: Mapping[str, object], tag: str
) -> bool:
    """The instance or its flavor carries the evacuable tag set to true (as
    `fence_compute --instance-filtering` reads it); an empty tag evacuates everything."""
    if not tag:
        return True
    for source in (metadata, flavor_extra_specs):
        value = source.get(tag)
        if value is not None and str(value).strip().lower() in ("true", "1", "yes"):
            return True
    return False


def backoff(tries: int) -> float:
    """Seconds to wait after the `tries`-th failure in a row: 1, 2, 4, ... up to 30."""
    if tries <= 0:
        return 0.0
    return float(min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (tries - 1)))


@dataclass(frozen=True, slots=True)
class Round:
    """What the evacuator does for one record now. Steps run in field order."""

    node: str
    wait_until: float = 0.0  # nothing before then (a backoff)
    disable_host: bool = False  # force down + disable the compute service first
    list_servers: bool = False  # read the host's instances from Nova
    evacuate: tuple[str, ...] = ()  # instance ids to evacuate now, at most `parallel`
    mark_done: bool = False
    enable_host: bool = False  # enable + un-force-down, then delete the record
    reason: str = ""


def plan_round(
    record: EvacuationRecord,
    servers: Iterable[Server] | None,
    *,
    host_back: bool,
    now: float,
    parallel: int = DEFAULT_PARALLEL,
    service_updated: str | None = None,
) -> Round:
    """The next round for a record. `servers` are the instances Nova lists on the host now
    (None: not read this round); `host_back`: the host's agent is a member again;
    `service_updated`: Nova's updated_at of the host's compute service now (None: not read)."""
    node = record.node
    if record.state is RecordState.DONE:
        if not host_back:
            return Round(node, reason=f"{node} evacuated; waiting for it to come back")
        if record.disabled_mark and not is_later(service_updated, record.disabled_mark):
            # Enabled before its compute service reports, the host would boot enabled: the
            # service must find itself disabled and be enabled once the cluster saw it back.
            return Round(
                node, reason=f"{node} is back; waiting for its compute service to report to Nova"
            )
        return Round(node, enable_host=True, reason=f"{node} is back and its record is done")
    if now < record.next_try:
        return Round(
            node,
            wait_until=record.next_try,
            reason=f"{node}: Nova unreachable ({record.last_error}); next try in "
            f"{record.next_try - now:.1f}s",
        )
    if not record.host_disabled:
        return Round(
            node,
            disable_host=True,
            list_servers=True,
            reason=f"{node} fenced: forcing its compute service down before evacuating",
        )
    if servers is None:
        return Round(node, list_servers=True, reason=f"{node}: reading its instances")
    on_host = {s.id for s in servers}
    progress = _merge(record, servers)
    candidates = [
        i
        for i, p in sorted(progress.items(), key=lambda kv: (kv[1].name, kv[0]))
        if i in on_host
        and p.state in (InstanceState.PENDING, InstanceState.FAILED, InstanceState.REQUESTED)
        and p.next_try <= now
    ]
    in_flight = sum(
        1
        for i, p in progress.items()
        if p.state is InstanceState.REQUESTED and i in on_host and p.next_try > now
    )
    room = max(0, parallel - in_flight)
    chosen = tuple(candidates[:room])
    left = [i for i, p in progress.items() if p.state not in _SETTLED and i not in chosen]
    if not chosen and not left and record.listed:
        return Round(node, mark_done=True, reason=f"{node}: every evacuable instance moved")
    return Round(
        node,
        evacuate=chosen,
        reason=f"{node}: evacuating {len(chosen)} now, {len(left)} more pending",
    )


def is_later(updated: str | None, mark: str) -> bool:
    """Is Nova's timestamp `updated` later than `mark` (both Nova's updated_at)? Unknown or
    unreadable: no."""
    if not updated:
        return False
    try:
        return _instant(updated) > _instant(mark)
    except ValueError:
        return False


def _instant(text: str) -> datetime.datetime:
    # Nova writes UTC without a zone (2026-12-06T14:00:01.000000); some deployments add one.
    moment = datetime.datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment


def _merge(record: EvacuationRecord, servers: Iterable[Server]) -> dict[str, InstanceProgress]:
    """The record's instances brought up to date with what Nova lists on the host now: new
    ones are pending (or skipped), requested ones no longer on the host are evacuated."""
    listed = {s.id: s for s in servers}
    out = dict(record.instances)
    for sid, server in listed.items():
        if sid not in out:
            state = InstanceState.PENDING if server.evacuable else InstanceState.SKIPPED
            out[sid] = InstanceProgress(state, name=server.name)
    for sid, p in list(out.items()):
        if p.state is InstanceState.REQUESTED and sid not in listed:
            out[sid] = replace(p, state=InstanceState.EVACUATED)
    return out


@dataclass(frozen=True, slots=True)
class CallResult:
    """The outcome of one evacuate call: ok, or the error."""

    instance: str
    ok: bool
    error: str = ""


def apply_results(
    record: EvacuationRecord,
    round_: Round,
    *,
    now: float,
    servers: Iterable[Server] | None = None,
    disabled: bool | None = None,
    disabled_mark: str | None = None,
    results: Iterable[CallResult] = (),
    unreachable: str | None = None,
) -> EvacuationRecord:
    """The record after a round: the host disabled (or not), instances listed, each evacuate
    call's outcome, or the whole round failed to reach Nova (`unreachable`: the error)."""
    if unreachable is not None:
        attempts = record.attempts + 1
        return replace(
            record,
            attempts=attempts,
            next_try=now + backoff(attempts),
            last_error=unreachable,
            updated=now,
        )
    out = replace(record, attempts=0, next_try=0.0, last_error="", updated=now)
    if disabled:
        out = replace(out, host_disabled=True, disabled_mark=disabled_mark or "")
    if servers is not None:
        out = replace(out, instances=_merge(out, servers), listed=True)
    progress = dict(out.instances)
    for result in results:
        p = progress.get(result.instance, InstanceProgress(InstanceState.PENDING))
        if result.ok:
            progress[result.instance] = replace(
                p, state=InstanceState.REQUESTED, error="", next_try=now + REQUEST_TIMEOUT
            )
        else:
            tries = p.tries + 1
            progress[result.instance] = replace(
                p,
                state=InstanceState.FAILED,
                tries=tries,
                next_try=now + backoff(tries),
                error=result.error,
            )
    out = replace(out, instances=progress)
    if round_.mark_done:
        out = replace(out, state=RecordState.DONE)
    return out
