"""A Galera node's position — cluster UUID and seqno — and where the agent reads it. Pure.

The agent reads `grastate.dat`; when the file gives no seqno (-1: the server did not stop
cleanly) it runs `mariadbd --wsrep-recover` and reads the log. `read_position` turns both
into one `Position`, which says whether the node may bootstrap.

Errors, both `ValueError`:

* `CorruptGrastate` — the file cannot be trusted (empty, a line that is not `key: value`,
  a bad UUID or seqno, a field twice); the message names the line.
* `BadRecoveryLog` — a `Recovered position` line whose value is not `UUID:SEQNO[,GTID]`.

Formats as written by galera-4 26.4 and MariaDB 10.11 (checked against the binaries on
these machines)::

    # GALERA saved state
    version: 2.1
    uuid:    1eed6042-f162-11f1-8fdc-4a6a617f6330
    seqno:   -1
    safe_to_bootstrap: 1

    2026-12-06 10:45:27 0 [Note] WSREP: Recovered position: 1eed6042-...-4a6a617f6330:5
    ... WSREP: Recovered position: 1eed6042-...-4a6a617f6330:8,7-11-6   (wsrep_gtid_mode on)
    ... [ERROR] Found 2 prepared transactions! It means that server was not shut down ...
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "UNKNOWN_SEQNO",
    "ZERO_UUID",
    "BadRecoveryLog",
    "CorruptGrastate",
    "Grastate",
    "GrastateState",
    "Position",
    "Recovered",
    "RecoveryLog",
    "Source",
    "needs_recovery",
    "parse_grastate",
    "parse_position",
    "parse_recovery_log",
    "parse_seqno",
    "parse_uuid",
    "position_attributes",
    "position_from_attributes",
    "read_position",
]

ZERO_UUID = "00000000-0000-0000-0000-000000000000"
UNKNOWN_SEQNO = -1
# wsrep seqnos are signed 64-bit; -1 printed as unsigned is 2**64 - 1. Anything else above
# the signed range is not a seqno at all.
_UNSIGNED_MINUS_ONE = 2**64 - 1
_MAX_SEQNO = 2**63 - 1

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_RECOVERED = re.compile(r"WSREP: Recovered position: *(?P<value>\S*)")
_PREPARED = re.compile(r"Found (?P<count>\d+) prepared transactions!")


class CorruptGrastate(ValueError):
    """grastate.dat cannot be trusted."""


class BadRecoveryLog(ValueError):
    """The `--wsrep-recover` log has a position line that does not parse."""


class GrastateState(enum.StrEnum):
    PRESENT = "present"
    MISSING = "missing"  # no file, or deleted to force a full state transfer
    CORRUPT = "corrupt"  # unparsable, or disagreeing with the data it describes


class Source(enum.StrEnum):
    GRASTATE = "grastate"  # a clean stop wrote the seqno
    RECOVERED = "recovered"  # read from InnoDB by --wsrep-recover


def parse_uuid(text: str) -> str:
    """A cluster state UUID in canonical (lower-case) form; ValueError otherwise."""
    if not _UUID.fullmatch(text):
        raise ValueError(f"{text!r} is not a UUID")
    return text.lower()


def parse_seqno(text: str) -> int:
    """A seqno: -1 (and its unsigned spelling 2^64−1) is unknown; ValueError otherwise."""
    if not re.fullmatch(r"-1|\d+", text):
        raise ValueError(f"{text!r} is not a seqno")
    value = int(text)
    if value == _UNSIGNED_MINUS_ONE:
        return UNKNOWN_SEQNO
    if value > _MAX_SEQNO:
        raise ValueError(f"{text} is out of the seqno range")
    return value


@dataclass(frozen=True, slots=True)
class Grastate:
    uuid: str
    seqno: int
    safe_to_bootstrap: bool
    version: str = ""


def parse_grastate(text: str) -> Grastate:
    """Parse grastate.dat. Unknown keys are kept out (later Galera versions may add some);
    uuid and seqno are required; safe_to_bootstrap is absent before version 2.1 (read as 0)."""
    fields: dict[str, tuple[int, str]] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, colon, value = line.partition(":")
        key = key.strip()
        if not colon or not key:
            raise CorruptGrastate(f"line {number}: expected 'key: value', found {raw!r}")
        if key in fields:
            raise CorruptGrastate(f"line {number}: {key!r} given twice")
        fields[key] = (number, value.strip())
    if not fields:
        raise CorruptGrastate("empty: no fields at all")
    for required in ("uuid", "seqno"):
        if required not in fields:
            raise CorruptGrastate(f"no {required!r} line")
    number, text = fields["uuid"]
    try:
        uuid = parse_uuid(text)
        number, text = fields["seqno"]
        seqno = parse_seqno(text)
        number, safe = fields.get("safe_to_bootstrap", (0, "0"))
        if safe not in ("0", "1"):
            raise ValueError(f"safe_to_bootstrap must be 0 or 1, found {safe!r}")
    except ValueError as exc:
        raise CorruptGrastate(f"line {number}: {exc}") from None
    return Grastate(
        uuid=uuid,
        seqno=seqno,
        safe_to_bootstrap=safe == "1",
        version=fields.get("version", (0, ""))[1],
    )


@dataclass(frozen=True, slots=True)
class Recovered:
    uuid: str
    seqno: int
    gtid: str | None = None  # MariaDB's domain-server-seqno, with wsrep_gtid_mode on


@dataclass(frozen=True, slots=True)
class RecoveryLog:
    """What one `mariadbd --wsrep-recover` run says."""

    recovered: Recovered | None  # the last "Recovered position" line, if any
    # "Found N prepared transactions!": the server refuses to resolve them by itself and
    # must be run again with --tc-heuristic-recover (the agent rolls them back).
    prepared: int = 0


def parse_position(text: str) -> Recovered:
    """`UUID:SEQNO` or `UUID:SEQNO,GTID` (the value of a Recovered position line)."""
    uuid, colon, rest = text.partition(":")
    if not colon:
        raise ValueError(f"{text!r} is not UUID:SEQNO")
    seqno, comma, gtid = rest.partition(",")
    if comma and not re.fullmatch(r"\d+-\d+-\d+", gtid):
        raise ValueError(f"{gtid!r} is not a GTID (domain-server-seqno)")
    return Recovered(parse_uuid(uuid), parse_seqno(seqno), gtid if comma else None)


def parse_recovery_log(text: str) -> RecoveryLog:
    recovered: Recovered | None = None
    prepared = 0
    for number, line in enumerate(text.splitlines(), 1):
        if match := _RECOVERED.search(line):
            try:
                recovered = parse_position(match["value"])
            except ValueError as exc:
                raise BadRecoveryLog(f"line {number}: {exc}") from None
        elif match := _PREPARED.search(line):
            prepared = int(match["count"])
    return RecoveryLog(recovered, prepared)


def needs_recovery(grastate: str | None) -> bool:
    """Must the agent run --wsrep-recover? Yes unless the file gives a known position."""
    if grastate is None:
        return True
    try:
        state = parse_grastate(grastate)
    except CorruptGrastate:
        return True
    return state.seqno < 0 or state.uuid == ZERO_UUID


@dataclass(frozen=True, slots=True)
class Position:
    """Where a stopped node's data stands, as its agent reports it."""

    # All zeros: InnoDB holds no wsrep position, so no cluster state at all (a fresh
    # datadir). None: not known (nothing could be recovered, and grastate.dat names none).
    uuid: str | None = ZERO_UUID
    seqno: int = UNKNOWN_SEQNO
    safe_to_bootstrap: bool = False
    grastate: GrastateState = GrastateState.PRESENT
    source: Source = Source.GRASTATE
    rolled_back: int = 0  # prepared transactions rolled back (grastate then deleted)

    def __post_init__(self) -> None:
        if self.uuid is not None:
            parse_uuid(self.uuid)
        elif self.seqno != UNKNOWN_SEQNO:
            raise ValueError("a seqno without a cluster UUID")
        if not UNKNOWN_SEQNO <= self.seqno <= _MAX_SEQNO:
            raise ValueError(f"seqno {self.seqno} is out of range")
        if self.rolled_back < 0:
            raise ValueError("rolled_back must not be negative")

    @property
    def is_empty(self) -> bool:
        """Holds nothing of any cluster: can never be ahead."""
        return self.uuid == ZERO_UUID

    @property
    def is_known(self) -> bool:
        return self.uuid is not None and not self.is_empty and self.seqno >= 0

    @property
    def can_bootstrap(self) -> bool:
        return self.why_not_bootstrap() is None

    def why_not_bootstrap(self) -> str | None:
        if self.is_empty:
            return "no cluster state"
        if self.seqno < 0:
            return f"seqno unknown ({self._how()})"
        if self.rolled_back:
            return f"{self.rolled_back} prepared transactions rolled back"
        if self.grastate is not GrastateState.PRESENT:
            return f"grastate.dat {self.grastate.value}"
        return None

    def _how(self) -> str:
        if self.grastate is GrastateState.PRESENT:
            return "nothing recovered"
        return f"grastate.dat {self.grastate.value}, nothing recovered"

    def __str__(self) -> str:
        return f"{self.uuid}:{self.seqno}" if self.uuid is not None else "unknown"


def read_position(
    grastate: str | None, recovery: RecoveryLog | None = None, *, rolled_back: int = 0
) -> Position:
    """The position from grastate.dat's text (None: no file) and, when the file gives no
    seqno, the --wsrep-recover log. `rolled_back` > 0: the agent rolled back prepared
    transactions and deleted grastate.dat, so the node is marked for a full state transfer.
    """
    state = GrastateState.PRESENT
    saved: Grastate | None = None
    if grastate is None:
        state = GrastateState.MISSING
    else:
        try:
            saved = parse_grastate(grastate)
        except CorruptGrastate:
            state = GrastateState.CORRUPT
    if rolled_back:
        state = GrastateState.MISSING
    safe = saved.safe_to_bootstrap if saved is not None and not rolled_back else False
    if saved is not None and saved.seqno >= 0 and saved.uuid != ZERO_UUID and not rolled_back:
        return Position(saved.uuid, saved.seqno, safe, state, Source.GRASTATE)
    named = saved.uuid if saved is not None and saved.uuid != ZERO_UUID else None
    recovered = recovery.recovered if recovery is not None else None
    if recovered is None:
        # Recovery gave no position: the file's UUID, if it names one, is all we know.
        return Position(named, UNKNOWN_SEQNO, safe, state, Source.RECOVERED, rolled_back)
    if recovered.uuid == ZERO_UUID:
        # InnoDB holds no wsrep position: this datadir never applied a write set.
        return Position(ZERO_UUID, UNKNOWN_SEQNO, False, state, Source.RECOVERED, rolled_back)
    if named not in (None, recovered.uuid):
        # The file names another history than the data: trust neither for a bootstrap.
        state = GrastateState.CORRUPT
    return Position(recovered.uuid, recovered.seqno, safe, state, Source.RECOVERED, rolled_back)


# ---- node attributes ------------------------------------------------------------------------


def position_attributes(resource: str, position: Position) -> dict[str, str]:
    """The transient node attributes that publish a position (docs/galera.md)."""
    out = {
        f"galera-{resource}-position": str(position),
        f"galera-{resource}-safe-to-bootstrap": "1" if position.safe_to_bootstrap else "0",
        f"galera-{resource}-grastate": position.grastate.value,
        f"galera-{resource}-source": position.source.value,
    }
    if position.rolled_back:
        out[f"galera-{resource}-rolled-back"] = str(position.rolled_back)
    return out


def position_from_attributes(resource: str, attributes: Mapping[str, str]) -> Position | None:
    """The position a node published, None if it has published none; ValueError if the
    attributes do not decode (a reader reports that as a problem and counts the node absent).
    """
    text = attributes.get(f"galera-{resource}-position")
    if text is None:
        return None
    uuid: str | None = None
    seqno = UNKNOWN_SEQNO
    if text != "unknown":
        where = parse_position(text)
        if where.gtid is not None:
            raise ValueError(f"position {text!r} carries a GTID")
        uuid, seqno = where.uuid, where.seqno
    safe = attributes.get(f"galera-{resource}-safe-to-bootstrap", "0")
    if safe not in ("0", "1"):
        raise ValueError(f"safe-to-bootstrap must be 0 or 1, found {safe!r}")
    rolled = attributes.get(f"galera-{resource}-rolled-back", "0")
    if not rolled.isdigit():
        raise ValueError(f"rolled-back must be a count, found {rolled!r}")
    return Position(
        uuid=uuid,
        seqno=seqno,
        safe_to_bootstrap=safe == "1",
        grastate=GrastateState(attributes.get(f"galera-{resource}-grastate", "present")),
        source=Source(attributes.get(f"galera-{resource}-source", "grastate")),
        rolled_back=int(rolled),
    )
