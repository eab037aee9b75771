"""A Galera node's server log, read as the runs of its server (pure: text in).

The agent appends a marker line before each start of mariadbd — `# hastack <wall time>:
<command line>` — so the log splits into the server's runs, each with when it was started,
whether it bootstrapped a new Primary Component (`--wsrep-new-cluster`, and the position it
started from), and how it got its state when it joined: by IST (write sets from a donor's
gcache) or by SST (a whole copy of a donor's datadir; rsync here). A join by SST after a
crash means the node's own data was not used: the acceptance cases require IST.

Lines as MariaDB 10.11 with galera-4 26.4 writes them (seen on these machines):

    WSREP_SST: [INFO] rsync SST started on joiner (20261206 13:17:41.303)
    ... [Note] WSREP: SST received: 69593f74-f177-11f1-8495-b3f076740396:4
    ... [Note] WSREP: Receiving IST...  0.0% (0/3 events) complete.
    ... [Note] WSREP: IST received: 69593f74-f177-11f1-8495-b3f076740396:4
    ... [Note] WSREP: Synchronized with group, ready for connections

(An SST is followed by a short IST of the write sets that arrived meanwhile: a run with an
SST counts as SST.) The SST script runs on every join, an IST too: the donor then passes
`--bypass`, the joiner's script copies nothing and says so, and its "SST received" only
confirms the joiner's own position — an IST, not a copy:

    WSREP_SST: [INFO] rsync SST started on joiner (20261206 14:09:31.643)
    ... [Note] WSREP: ####### IST uuid:96ac7b1a-f17e-11f1-a6ac-6e56f7facdeb f: 625, l: 1130, STRv: 3
    WSREP_SST: [INFO] rsync IST completed on joiner (20261206 14:09:33.060)
    ... [Note] WSREP: SST received: 96ac7b1a-f17e-11f1-a6ac-6e56f7facdeb:624
    ... [Note] WSREP: IST received: 96ac7b1a-f17e-11f1-a6ac-6e56f7facdeb:1130
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["Reported", "ServerRun", "Transfer", "reported_positions", "server_runs"]

_MARKER = re.compile(r"^# hastack(?: (\d+(?:\.\d+)?))?: (.*)$")
_START_POSITION = re.compile(r"--wsrep-start-position=(\S+)")
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) ")
_RECEIVED = re.compile(r"WSREP: (IST|SST) received: ([0-9a-f-]{36}):(-?\d+)")


# `2026-12-06T13:17:38.572 n3 hastack.executor.galera INFO: n3: galera position
#  UUID:SEQNO (recovered, grastate present, safe_to_bootstrap 0)` (the agent's log).
_POSITION = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?) \S+ hastack\.executor\.galera INFO: "
    r"(\S+): (\S+) position (\S+):(-?\d+) \((\w+), grastate (\w+), safe_to_bootstrap (\d)\)"
)


class Transfer(enum.StrEnum):
    IST = "IST"
    SST = "SST"


@dataclass(frozen=True, slots=True)
class ServerRun:
    started: float | None  # wall time of the start (None: a marker without one)
    bootstrap: bool  # started with --wsrep-new-cluster
    start_position: str | None  # --wsrep-start-position, UUID:SEQNO
    transfer: Transfer | None  # how a joiner got its state (None: a bootstrap, or not yet)
    received: str | None  # the position the transfer brought it to, UUID:SEQNO
    synced: bool  # reached "Synchronized with group"
    errors: tuple[str, ...]  # its [ERROR] lines, as the server wrote them
    # Every state transfer the run received, with the log's time of it (local time, whole
    # seconds; None before the first timed line): a server that rejoins by itself after a
    # partition heals receives an IST within the same run.
    transfers: tuple[tuple[float | None, Transfer], ...] = ()


@dataclass(slots=True)
class _Reading:
    """The run being read (mutable while its lines come)."""

    started: float | None
    bootstrap: bool
    start_position: str | None
    transfer: Transfer | None = None
    received: str | None = None
    synced: bool = False
    errors: list[str] = field(default_factory=list)
    transfers: list[tuple[float | None, Transfer]] = field(default_factory=list)
    clock: float | None = None  # the time of the last timed line
    bypass: bool = False  # the SST script said it copied nothing (an IST)

    def done(self) -> ServerRun:
        return ServerRun(
            self.started,
            self.bootstrap,
            self.start_position,
            self.transfer,
            self.received,
            self.synced,
            tuple(self.errors),
            tuple(self.transfers),
        )

    def read(self, line: str) -> None:
        stamp = _STAMP.match(line)
        if stamp:
            self.clock = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S").timestamp()
        if "IST completed on joiner" in line:
            self.bypass = True
        received = _RECEIVED.search(line)
        if received:
            kind = Transfer(received.group(1))
            if kind is Transfer.SST and self.bypass:
                kind = Transfer.IST
            self.bypass = False
            self.transfers.append((self.clock, kind))
            if kind is Transfer.SST or self.transfer is None:
                self.transfer = kind
            self.received = f"{received.group(2)}:{received.group(3)}"
        if "Synchronized with group" in line:
            self.synced = True
        if "[ERROR]" in line:
            self.errors.append(line)


def server_runs(text: str) -> list[ServerRun]:
    """Every run of the server the log shows, in order. Lines before the first marker
    (a log the agent did not start) are ignored."""
    runs: list[ServerRun] = []
    current: _Reading | None = None
    for line in text.splitlines():
        marker = _MARKER.match(line)
        if marker:
            if current is not None:
                runs.append(current.done())
            command = marker.group(2)
            position = _START_POSITION.search(command)
            current = _Reading(
                started=float(marker.group(1)) if marker.group(1) else None,
                bootstrap="--wsrep-new-cluster" in command,
                start_position=position.group(1) if position else None,
            )
        elif current is not None:
            current.read(line)
    if current is not None:
        runs.append(current.done())
    return runs


@dataclass(frozen=True, slots=True)
class Reported:
    """A position an agent recovered and published (its log line)."""

    node: str
    at: float  # wall time (the log's local time)
    uuid: str | None
    seqno: int
    source: str  # grastate | recovered
    safe_to_bootstrap: bool


def reported_positions(text: str, resource: str) -> list[Reported]:
    """Every position the agent's log says it recovered for `resource`, in order."""
    out = []
    for line in text.splitlines():
        m = _POSITION.match(line)
        if m is None or m.group(3) != resource:
            continue
        at = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").timestamp()
        uuid = None if m.group(4) == "unknown" else m.group(4)
        out.append(Reported(m.group(2), at, uuid, int(m.group(5)), m.group(6), m.group(8) == "1"))
    return out
