"""`pip install` gives the `hastack` command; an older Python is told plainly what it needs."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from hastack import REQUIRED_PYTHON, __version__, python_problem

ROOT = Path(__file__).resolve().parent.parent


def older_python() -> str | None:
    """An interpreter older than 3.11 that runs on this machine, if there is one."""
    candidates = [shutil.which(f"python3.{minor}") for minor in (10, 9, 8)]
    candidates += sorted(glob.glob("/root/.pyenv/versions/3.1[0]*/bin/python"), reverse=True)
    candidates += sorted(glob.glob("/root/.pyenv/versions/3.[789]*/bin/python"), reverse=True)
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[1])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip().isdigit() and int(probe.stdout) < 11:
            return candidate
    return None


def test_the_version_check_names_both_versions() -> None:
    assert python_problem((3, 11, 0)) is None
    assert python_problem((3, 13, 1)) is None
    message = python_problem((3, 10, 4))
    assert message is not None
    assert message.startswith("hastack needs Python 3.11 or newer; this is Python 3.10.4")
    assert REQUIRED_PYTHON == (3, 11)


def test_an_older_python_gets_the_message_not_a_traceback() -> None:
    python = older_python()
    if python is None:
        pytest.skip("no Python older than 3.11 on this machine (looked for python3.8-3.10)")
    result = subprocess.run(
        [python, "-m", "hastack", "status"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert result.returncode == 1
    assert "hastack needs Python 3.11 or newer; this is Python 3." in result.stderr
    assert "Traceback" not in result.stderr


def test_the_wheel_has_the_command_and_every_module(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("hastack-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"hastack-{__version__}.dist-info"
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
        metadata = archive.read(f"{info}/METADATA").decode()
    assert "hastack = hastack.cli.main:main" in entry_points
    assert "Requires-Python: >=3.11" in metadata
    assert "Requires-Dist: cryptography" in metadata
    sources = {str(p.relative_to(ROOT / "src")) for p in (ROOT / "src" / "hastack").rglob("*.py")}
    assert sources <= names, sorted(sources - names)
    assert "hastack/py.typed" in names
    target = tmp_path / "site"
    installed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    command = target / "bin" / "hastack"
    env = {**os.environ, "PYTHONPATH": str(target)}
    version = subprocess.run(
        [str(command), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert version.stdout.strip() == f"hastack {__version__}", version.stderr
    where = subprocess.run(
        [sys.executable, "-c", "import hastack; print(hastack.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert where.stdout.startswith(str(target))
    python = older_python()
    if python is not None:
        refused = subprocess.run(
            [
                python,
                "-m",
                "pip",
                "install",
                "--no-deps",
                "--target",
                str(tmp_path / "old"),
                str(wheel),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert refused.returncode != 0
        assert "requires a different Python" in refused.stderr + refused.stdout
