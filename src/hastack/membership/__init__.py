"""Membership (Corosync's role) on etcd: leases, member keys, DC election, quorum."""
