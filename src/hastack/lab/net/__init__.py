"""The network-namespace lab: a multi-host cluster on one machine, faults, and the tools
scenarios use. `topology` is the pure shape; `links` touches the machine; `lab` is the lab."""

from hastack.lab.net.lab import FAST_TIMINGS, Lab, LabError, StatusFeed, default_dir, require_root
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
