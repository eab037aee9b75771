"""The OCF resource agent API's exit codes, defined once: the executor returns them, the
CIB importer reads them from Pacemaker's history, `hastack status` names them."""

from __future__ import annotations

import enum

__all__ = ["OcfRc"]


class OcfRc(enum.IntEnum):
    """OCF exit codes (the resource agent API's, which Pacemaker uses)."""

    SUCCESS = 0
    ERR_GENERIC = 1
    ERR_ARGS = 2
    ERR_UNIMPLEMENTED = 3
    ERR_PERM = 4
    ERR_INSTALLED = 5
    ERR_CONFIGURED = 6
    NOT_RUNNING = 7
    RUNNING_PROMOTED = 8
    FAILED_PROMOTED = 9
    DEGRADED = 190  # OCF 1.1: running, but not fully healthy
    DEGRADED_PROMOTED = 191

    @staticmethod
    def describe(rc: int) -> str:
        try:
            return OcfRc(rc).name.lower().replace("_", " ")
        except ValueError:
            return f"unknown exit code {rc}"
