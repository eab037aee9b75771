"""The fencing history of a node: the value of `<prefix>/fencing/<node>`, newest last.

    [{"node": "n1", "action": "reboot", "result": "success", "level": 1,
      "devices": ["ipmi-n1"], "reason": "...", "started": 1700000000.1,
      "finished": 1700000000.9, "by": "n2", "epoch": 42}, ...]

Kept to the last HISTORY entries. The store revision of the write that added a success is
what tells the DC the node was fenced after it last joined — so the newest entry must stay a
success once one is recorded, and the key must not be written again for nothing: a failed
attempt that began before that success finished (a device that failed while the operator
confirmed the node down) is not added, see `with_record`; the fencer's log keeps it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from hastack.model.jsontext import json_value

if TYPE_CHECKING:
    from hastack.model.members import ClusterSnapshot

__all__ = [
    "HISTORY",
    "FenceRecord",
    "assume_recorded",
    "decode_history",
    "encode_history",
    "with_record",
]

HISTORY = 20


@dataclass(frozen=True, slots=True)
class FenceRecord:
    node: str
    action: str
    result: str  # success, failed
    level: int
    devices: tuple[str, ...]
    reason: str
    started: float
    finished: float
    by: str
    epoch: int

    @property
    def succeeded(self) -> bool:
        return self.result == "success"


def with_record(history: list[FenceRecord], record: FenceRecord) -> list[FenceRecord] | None:
    """The history with `record` added, newest last; None when it is not to be added: it is
    there already (a copy of the same write, re-sent while the first was unanswered, found
    the first's result), or a failure that began before the newest success finished says
    nothing about the node after that success (and a write of the key would read as a newer
    fencing)."""
    if record in history:
        return None
    if (
        not record.succeeded
        and history
        and history[-1].succeeded
        and record.started <= history[-1].finished
    ):
        return None
    return [*history, record]


def assume_recorded(snapshot: ClusterSnapshot, record: FenceRecord) -> ClusterSnapshot | None:
    """The snapshot as it will read once `record` is appended to its node's history by a
    write made after the snapshot's revision — for the DC that decides, the moment the device
    answers, what it writes in the same transaction as the record (docs/fencing.md, "The
    confirmation and the schedule in one write"). None when the record would not be
    appended (`with_record`).

    The write's revision is not known yet; every revision in the snapshot is at most the
    snapshot's own, and the write comes later, so `snapshot.revision + 1` stands for it: each
    question the DC asks of a history's revision (fenced since the node joined, since its
    report) compares it with a revision of the snapshot, and gets the answer it will get
    from the store's."""
    history = snapshot.fencing.get(record.node, [])
    updated = with_record(list(history), record)
    if updated is None:
        return None
    return dataclasses.replace(
        snapshot,
        fencing={**snapshot.fencing, record.node: updated[-HISTORY:]},
        fencing_revisions={**snapshot.fencing_revisions, record.node: snapshot.revision + 1},
    )


def encode_history(records: list[FenceRecord]) -> bytes:
    return json.dumps([asdict(r) for r in records[-HISTORY:]], sort_keys=True).encode()


def decode_history(raw: bytes) -> list[FenceRecord]:
    data = json_value(raw)
    if not isinstance(data, list):
        raise ValueError("expected a list of fencing records")
    out = []
    for item in data:
        if not isinstance(item, dict):
            raise ValueError("a fencing record must be an object")
        try:
            out.append(
                FenceRecord(
                    node=str(item["node"]),
                    action=str(item["action"]),
                    result=str(item["result"]),
                    level=int(item.get("level", 0)),
                    devices=tuple(str(d) for d in item.get("devices", [])),
                    reason=str(item.get("reason", "")),
                    started=float(item["started"]),
                    finished=float(item["finished"]),
                    by=str(item.get("by", "")),
                    epoch=int(item.get("epoch", 0)),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"a fencing record is incomplete ({exc})") from None
    return out
