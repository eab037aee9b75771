"""The compiled hot path is used only when it was built from the sources as they are."""

from __future__ import annotations

import importlib.machinery
import json
from pathlib import Path

from hastack.proxy import native


def _tree(folder: Path) -> None:
    for name in native.HOT:
        (folder / f"{name}.py").write_text(f"# {name}\n")


def test_a_build_older_than_its_sources_is_stale(tmp_path: Path) -> None:
    _tree(tmp_path)
    assert native.judge(tmp_path) == "python"  # nothing built
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    for name in native.HOT:
        (tmp_path / f"{name}{suffix}").write_bytes(b"")
    assert native.judge(tmp_path) == "stale"  # built, but no record of what from
    (tmp_path / "_native.json").write_text(json.dumps(native.record(tmp_path)))
    assert native.judge(tmp_path) == "compiled"
    (tmp_path / "http.py").write_text("# edited since the build\n")
    assert native.judge(tmp_path) == "stale"
    (tmp_path / "_native.json").write_text(json.dumps(native.record(tmp_path)))
    (tmp_path / f"tcp{suffix}").unlink()
    assert native.judge(tmp_path) == "stale"  # all compiled, or none


def test_the_running_state_is_reported() -> None:
    assert native.state() in ("compiled", "python", "stale")
