"""Clusters on one machine: on loopback (local) and, later, in network namespaces (lab)."""
