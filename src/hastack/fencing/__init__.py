"""Fencing: fence devices by the fence-agents protocol, levels, history, and the local
power-off agent for local clusters and the lab."""
