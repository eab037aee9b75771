"""The coordination store: etcd v3 behind a small async interface."""

from hastack.store.etcd import EndpointStatus, Store, endpoint_status
from hastack.store.keys import Keys
from hastack.store.types import (
    Compare,
    DeleteOp,
    Event,
    EventKind,
    GetOp,
    KeyValue,
    Lease,
    PutOp,
    RangeResult,
    TxnResult,
    WatchBatch,
)

__all__ = [
    "Compare",
    "DeleteOp",
    "EndpointStatus",
    "Event",
    "EventKind",
    "GetOp",
    "KeyValue",
    "Keys",
    "Lease",
    "PutOp",
    "RangeResult",
    "Store",
    "TxnResult",
    "WatchBatch",
    "endpoint_status",
]
