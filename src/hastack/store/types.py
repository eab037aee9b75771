"""Plain values the store hands out and takes in; no I/O here."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "Compare",
    "CompareTarget",
    "DeleteOp",
    "Event",
    "EventKind",
    "GetOp",
    "KeyValue",
    "Lease",
    "Op",
    "PutOp",
    "RangeResult",
    "TxnResult",
    "WatchBatch",
]


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int


@dataclass(frozen=True, slots=True)
class RangeResult:
    kvs: tuple[KeyValue, ...]
    revision: int  # the store's revision when the read was served


class EventKind(enum.Enum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    kv: KeyValue  # for a delete: key and mod_revision of the deletion, empty value


@dataclass(frozen=True, slots=True)
class WatchBatch:
    events: tuple[Event, ...]
    revision: int  # every change up to this revision has been delivered


@dataclass(frozen=True, slots=True)
class Lease:
    id: int
    ttl: int  # seconds, as granted by the server (it may raise a small request)


class CompareTarget(enum.Enum):
    CREATE = "create"
    MOD = "mod"
    VERSION = "version"
    VALUE = "value"


@dataclass(frozen=True, slots=True)
class Compare:
    """One compare of a transaction: `target(key) op operand`."""

    key: str
    target: CompareTarget
    op: str  # one of "=", "!=", "<", ">"
    operand: int | bytes

    @staticmethod
    def absent(key: str) -> Compare:
        """The key does not exist (its create revision is 0)."""
        return Compare(key, CompareTarget.CREATE, "=", 0)

    @staticmethod
    def unchanged(key: str, mod_revision: int) -> Compare:
        """The key was last written at `mod_revision` (0: it does not exist)."""
        return Compare(key, CompareTarget.MOD, "=", mod_revision)

    @staticmethod
    def created_at(key: str, create_revision: int) -> Compare:
        return Compare(key, CompareTarget.CREATE, "=", create_revision)

    @staticmethod
    def value_is(key: str, value: bytes) -> Compare:
        return Compare(key, CompareTarget.VALUE, "=", value)


@dataclass(frozen=True, slots=True)
class PutOp:
    key: str
    value: bytes
    lease: int = 0


@dataclass(frozen=True, slots=True)
class DeleteOp:
    key: str
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class GetOp:
    key: str
    prefix: bool = False


Op = PutOp | DeleteOp | GetOp


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int
    # one entry per op of the branch that ran: the KeyValues a GetOp read, () otherwise
    reads: tuple[tuple[KeyValue, ...], ...]
