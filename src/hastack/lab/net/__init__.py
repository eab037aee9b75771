"""The network-namespace lab: a multi-host cluster on one machine, faults, and the tools
scenarios use. `topology` is the pure shape; `links` touches the machine; `lab` is the lab.

The names below are loaded on first use: every process the lab starts goes through
`python -m hastack.lab.net.boot`, which imports this package and should not pay for the lab
itself (pyroute2, the harness, pydantic models) on each of a hundred agents.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hastack.lab.net.lab import (
        FAST_TIMINGS,
        Lab,
        LabError,
        StatusFeed,
        default_dir,
        require_root,
    )
    from hastack.lab.net.topology import Host, HostRole, NetFaults, Topology

__all__ = [
    "FAST_TIMINGS",
    "Host",
    "HostRole",
    "Lab",
    "LabError",
    "NetFaults",
    "StatusFeed",
    "Topology",
    "default_dir",
    "require_root",
]

_WHERE = {
    **dict.fromkeys(
        ("FAST_TIMINGS", "Lab", "LabError", "StatusFeed", "default_dir", "require_root"),
        "hastack.lab.net.lab",
    ),
    **dict.fromkeys(("Host", "HostRole", "NetFaults", "Topology"), "hastack.lab.net.topology"),
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
