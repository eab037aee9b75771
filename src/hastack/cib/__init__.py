"""Pacemaker's CIB as hastack data: for `hastack config import-cib` and the comparison with
Pacemaker's scheduler regression cases (bench/cts_report.py). Pure: text in, data out."""

from __future__ import annotations

from hastack.cib.importer import CibImport, import_cib, to_yaml

__all__ = ["CibImport", "import_cib", "to_yaml"]
