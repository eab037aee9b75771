"""Compute nodes and instance HA: the evacuation record and its decisions (`evacuation`,
pure), the fence step that writes the record (`fence_step`), the evacuator that drains the
records against the Nova API (`evacuator`, `nova`). docs/compute.md."""
