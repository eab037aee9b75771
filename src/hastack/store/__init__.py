"""The coordination store: etcd v3 behind a small async interface.

`Store` is the interface (a Protocol); `EtcdStore` is the etcd client that provides it and
`hastack.store.memory.MemoryStore` the in-memory fake for tests.
"""

from hastack.store.etcd import EndpointStatus, EtcdStore, endpoint_status, member_quorum
from hastack.store.keys import Keys
from hastack.store.protocol import Store
from hastack.store.types import (
    Compare,
    CompareTarget,
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
    "CompareTarget",
    "DeleteOp",
    "EndpointStatus",
    "EtcdStore",
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
    "member_quorum",
]
