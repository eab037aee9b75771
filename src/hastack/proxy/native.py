"""The proxy's hot path compiled with mypyc, and never a stale build of it.

`setup.py` compiles the modules in `HOT` to C extensions with mypyc when asked
(`HASTACK_NATIVE=1`, as `scripts/setup` does) and records the SHA-256 of each source it
compiled in `_native.json`. The sources stay the plain, typed Python they are — the same
code runs compiled or not; compiled, a request costs less than half the interpreter time
(docs/proxy.md, "Compiled hot path").

An extension module sits beside its `.py` and wins the import, so an edited source would be
shadowed by an old build. `guard()`, called by the package's `__init__` before any of these
modules is imported, compares the digests: if any source changed since the build, *all* hot
modules are imported from source (they call each other natively, so they are compiled or
interpreted together), and `state()` says so; `scripts/setup` rebuilds.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

__all__ = ["HOT", "guard", "state"]

HOT = ("balance", "runtime", "http", "tcp")  # hastack.proxy.<name>
_HERE = Path(__file__).resolve().parent
MANIFEST = _HERE / "_native.json"

_state = "python"  # compiled | python | stale


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def judge(folder: Path = _HERE) -> str:
    """compiled (every hot module built from its current source), python (no build), or
    stale (a build whose sources have changed since)."""
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    built = [n for n in HOT if any((folder / f"{n}{s}").exists() for s in suffixes)]
    if not built:
        return "python"
    try:
        recorded = json.loads((folder / MANIFEST.name).read_text())
    except (OSError, ValueError):
        return "stale"
    for name in HOT:
        source = folder / f"{name}.py"
        if name not in built or recorded.get(name) != _digest(source):
            return "stale"
    return "compiled"


class _FromSource(importlib.abc.MetaPathFinder):
    """Imports the hot modules from their `.py` files, past a stale extension beside them."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != __package__ or name not in HOT:
            return None
        return importlib.util.spec_from_file_location(fullname, _HERE / f"{name}.py")


def guard() -> None:
    global _state
    _state = judge()
    if _state == "stale" and not any(isinstance(f, _FromSource) for f in sys.meta_path):
        sys.meta_path.insert(0, _FromSource())


def state() -> str:
    """What runs: `compiled`, `python`, or `stale` (a build older than its sources, so the
    sources run); for the start-up log and /stats.json."""
    return _state


def record(folder: Path) -> dict[str, str]:
    """The digests to write into `_native.json` when building (used by setup.py)."""
    return {name: _digest(folder / f"{name}.py") for name in HOT}
