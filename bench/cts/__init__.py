"""Tooling for Pacemaker's scheduler regression cases (cts/scheduler): reading summaries."""
