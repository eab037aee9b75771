"""One recorded resource operation (`<lrm_rsc_op>`) as the history replay reads it, and the
order of one resource's operations on one node.

    read_operations(lrm_resource) -> [Op, ...]     oldest first, as Pacemaker replays them

Pacemaker orders by call id; a call still pending (call id -1) is placed by the number of the
transition that started it, and equal entries keep the order in which Pacemaker collects them
(last first), since its sort is stable. Entries without an operation name, exit code or
execution status are skipped.
"""

from __future__ import annotations

import enum
import functools
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from hastack.cib.cibxml import parse_int

__all__ = ["ExecStatus", "Op", "read_operations"]


class ExecStatus(enum.IntEnum):
    """Pacemaker's execution statuses (include/crm/common/results.h): how the call went, as
    opposed to the agent's exit code (hastack.model.ocf.OcfRc), which is what it answered."""

    PENDING = -1
    DONE = 0
    CANCELLED = 1
    TIMEOUT = 2
    NOT_SUPPORTED = 3
    ERROR = 4
    ERROR_HARD = 5
    ERROR_FATAL = 6
    NOT_INSTALLED = 7
    NOT_CONNECTED = 8
    INVALID = 9
    NO_FENCE_DEVICE = 10
    NO_SECRETS = 11


@dataclass
class Op:
    rid: str  # the lrm_resource id: a primitive, or a clone instance "rsc:N"
    xml: ET.Element
    task: str
    interval_ms: int
    call_id: int  # -1 while pending
    rc: int  # the agent's exit code
    status: int  # the execution status (ExecStatus, or a value Pacemaker does not know)
    expected: int  # the exit code the transition expected (-1 if unknown)
    last_change: int | None

    @property
    def is_probe(self) -> bool:
        return self.task == "monitor" and self.interval_ms == 0


def read_operations(rsc_el: ET.Element) -> list[Op]:
    """The operations of one `<lrm_resource>`, oldest first."""
    rid = rsc_el.get("id", "")
    ops: list[Op] = []
    for el in rsc_el.findall("lrm_rsc_op"):
        task = el.get("operation")
        rc = parse_int(el.get("rc-code"))
        status = parse_int(el.get("op-status"))
        if task is None or rc is None or status is None:
            continue
        key = (el.get("transition-key") or "").split(":")
        expected = parse_int(key[2]) if len(key) >= 4 else None
        call_id = parse_int(el.get("call-id"))
        ops.append(
            Op(
                rid=rid,
                xml=el,
                task=task,
                interval_ms=parse_int(el.get("interval")) or 0,
                call_id=call_id if call_id is not None else -1,
                rc=rc,
                status=status,
                expected=expected if expected is not None else -1,
                last_change=parse_int(el.get("last-rc-change") or el.get("last_rc_change")),
            )
        )
    # Pacemaker collects the entries last-first before its stable sort, which decides the
    # order of entries it finds equal; so do we.
    newest_first = ops[::-1]
    return sorted(newest_first, key=functools.cmp_to_key(_older_first))


def _transition_of(op: Op) -> tuple[str, int] | None:
    """(transition uuid, transition number) from `transition-magic`."""
    magic = op.xml.get("transition-magic") or ""
    _status, sep, key = magic.partition(";")
    parts = key.split(":")
    if not sep or len(parts) < 4:
        return None
    number = parse_int(parts[1])
    return (parts[3], number) if number is not None else None


def _older_first(a: Op, b: Op) -> int:
    """Pacemaker's pe__is_newer_op for entries of one node: call ids, pending calls (-1)
    placed by their transition numbers, ties by last-rc-change."""
    if a.call_id == -1 and b.call_id == -1:
        return 0
    if 0 <= a.call_id < b.call_id:
        return -1
    if b.call_id >= 0 and a.call_id > b.call_id:
        return 1
    if a.call_id >= 0 and b.call_id >= 0:
        last_a, last_b = a.last_change or -1, b.last_change or -1
        if 0 <= last_a < last_b:
            return -1
        if last_b >= 0 and last_a > last_b:
            return 1
        return 0
    ta, tb = _transition_of(a), _transition_of(b)
    if ta is None or tb is None:
        return 0
    (uuid_a, id_a), (uuid_b, id_b) = ta, tb
    if uuid_a != uuid_b or id_a == id_b:
        if b.call_id == -1:
            return -1
        if a.call_id == -1:
            return 1
    elif (0 <= id_a < id_b) or id_b == -1:
        return -1
    elif (id_b >= 0 and id_a > id_b) or id_a == -1:
        return 1
    return 0
