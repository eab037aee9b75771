"""Every external program a test, the demo or a benchmark uses is installed by the project.

A fresh Debian machine has nothing but Debian and Python: a test that calls a program from a
package nobody installs passes on the machine where someone installed it by hand and fails
everywhere else (it happened with `fence_apc`). `scripts/debian-packages` lists every package
and what is used from it; `scripts/setup` installs its `setup` lines, `bench/debs.py` its
`bench` lines. This test reads the code and finds what it names:

* the program of every `subprocess.*`, `asyncio.create_subprocess_exec`, `spawn`,
  `shutil.which` and `ensure_programs` call whose program is a literal;
* every module-level tuple whose name ends in `PROGRAMS` (programs checked in a loop);
* every fence agent (`"agent": "fence_..."`) and OCF agent (`ocf:PROVIDER:TYPE`), in code and
  in the YAML of scenarios/ and examples/;
* every absolute system path (`/usr/...`, `/sbin/...`).

Each must be listed in the manifest, be made by hastack itself (its console scripts, the
test agents under tests/), or be part of every Debian installation (BASE below).
"""

from __future__ import annotations

import ast
import re
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "scripts" / "debian-packages"

# In every Debian 12 installation (packages of priority "required": coreutils, dpkg/apt,
# bash, ...), so nothing needs to install them.
BASE = {
    "sh", "bash", "sleep", "du", "kill", "true", "false", "cat", "env", "nice", "apt-get", "dpkg",
    "setpriv",  # util-linux, Essential
}  # fmt: skip
# Named but never run: absent on purpose (the tests check that a missing agent is refused),
# or only recognised in an imported Pacemaker CIB.
NOT_RUN = {
    "fence_nonexistent",
    "ocf:hastack-test:no-such-agent",
    "ocf:pacemaker:remote",
    "ocf:test:scripted",  # tests/test_lrm.py drives it through a scripted in-memory driver
    "ocf:test:counted",  # tests/test_ocf_metadata.py writes it into its temporary directory
}
SUBPROCESS_CALLS = {"run", "Popen", "check_output", "check_call", "call", "create_subprocess_exec"}
PROGRAM_CALLS = {"which", "spawn", "ensure_programs"}
_FENCE = re.compile(r"fence_[a-z0-9_]+")
_OCF = re.compile(r"ocf:[a-z0-9_-]+:[A-Za-z0-9_.-]+")
_PATH = re.compile(r"/(?:usr|sbin|bin|lib)/[A-Za-z0-9_./+-]+")


def read_manifest(text: str) -> dict[str, tuple[str, set[str]]]:
    """package -> (when, what is used from it)."""
    out: dict[str, tuple[str, set[str]]] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].split()
        if not line:
            continue
        if len(line) < 3 or line[0] not in ("setup", "bench"):
            raise AssertionError(
                f"debian-packages:{number}: want WHEN PACKAGE WHAT..., got {raw!r}"
            )
        out[line[1]] = (line[0], set(line[2:]))
    return out


def _own_programs() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    own = set(project.get("scripts", {}))
    own |= {p.name for p in (ROOT / "tests" / "fence").iterdir()}
    agents = ROOT / "tests" / "ocf" / "resource.d"
    own |= {f"ocf:{p.parent.name}:{p.name}" for p in agents.glob("*/*")}
    return own


def _callee(call: ast.Call) -> tuple[str | None, str | None]:
    f = call.func
    if isinstance(f, ast.Attribute):
        owner = f.value.id if isinstance(f.value, ast.Name) else None
        return owner, f.attr
    if isinstance(f, ast.Name):
        return None, f.id
    return None, None


def _literal_program(arg: ast.expr) -> str | None:
    if isinstance(arg, ast.List | ast.Tuple) and arg.elts:
        arg = arg.elts[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    return None


def names_in_python(source: str) -> Iterator[str]:
    """Programs, agents and system paths a Python module names (see the module docstring)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            owner, name = _callee(node)
            wanted = (name in SUBPROCESS_CALLS and owner in ("subprocess", "asyncio")) or (
                name in PROGRAM_CALLS
            )
            if wanted:
                args = node.args if name == "ensure_programs" else node.args[:1]
                for arg in args:
                    program = _literal_program(arg)
                    if program is not None and not program.startswith("-"):
                        yield program
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple):
            if any(isinstance(t, ast.Name) and t.id.endswith("PROGRAMS") for t in node.targets):
                for element in node.value.elts:
                    if isinstance(element, ast.Constant) and isinstance(element.value, str):
                        yield element.value
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if (
                    isinstance(key, ast.Constant)
                    and key.value == "agent"
                    and isinstance(value, ast.Constant)
                    and isinstance(value.value, str)
                    and _FENCE.fullmatch(value.value)
                ):
                    yield value.value
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield from _OCF.findall(node.value)
            if _PATH.fullmatch(node.value):
                yield node.value


def names_in_yaml(text: str) -> Iterator[str]:
    yield from _OCF.findall(text)
    for match in re.finditer(r"agent:\s*(fence_[a-z0-9_]+)", text):
        yield match.group(1)


def used_names() -> dict[str, set[str]]:
    """name -> the files that use it."""
    used: dict[str, set[str]] = {}
    for folder in ("src", "tests", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            if path == Path(__file__).resolve():
                continue  # its own negative control names made-up programs
            for name in names_in_python(path.read_text()):
                used.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    for folder in ("scenarios", "examples"):
        for path in (ROOT / folder).rglob("*.yaml"):
            for name in names_in_yaml(path.read_text()):
                used.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return used


def _covered(name: str, provided: set[str]) -> bool:
    if name in provided:
        return True
    # Where pip puts one of hastack's own console scripts (the units `hastack init` writes).
    if name.startswith("/usr/local/bin/") and Path(name).name in _own_programs():
        return True
    # A path under a listed directory (/usr/lib/ocf/resource.d/... under /usr/lib/ocf).
    return name.startswith("/") and any(
        p.startswith("/") and name.startswith(p.rstrip("/") + "/") for p in provided
    )


def test_every_program_the_code_uses_is_installed_by_the_project() -> None:
    manifest = read_manifest(MANIFEST.read_text())
    provided = set().union(*(what for _, what in manifest.values()))
    provided |= BASE | NOT_RUN | _own_programs()
    missing = {
        name: files
        for name, files in used_names().items()
        if not _covered(name, provided) and not name.startswith(str(ROOT))
    }
    assert not missing, (
        "used but installed by nothing (add to scripts/debian-packages):\n"
        + "\n".join(
            f"  {name}: {', '.join(sorted(files))}" for name, files in sorted(missing.items())
        )
    )


def test_setup_installs_the_manifest_setup_lines() -> None:
    """scripts/setup reads its package list from the manifest: print it without installing."""
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup"), "--list-packages"],
        capture_output=True,
        text=True,
        check=True,
    )
    manifest = read_manifest(MANIFEST.read_text())
    wanted = {pkg for pkg, (when, _) in manifest.items() if when == "setup"}
    assert set(result.stdout.split()) == wanted


def test_the_scan_finds_what_a_test_would_call() -> None:
    """A negative control: the scan sees each kind of use, so a new one cannot slip by."""
    source = """
import shutil, subprocess, asyncio
subprocess.run(["fence_x1", "-o", "metadata"])
asyncio.create_subprocess_exec("prog_x2", "arg")
shutil.which("prog_x3")
LAB_PROGRAMS = ("prog_x4", "prog_x5")
device = {"device": "d", "agent": "fence_x6"}
cfg = "agent: ocf:heartbeat:X7"
path = "/usr/lib/x8/thing"
ensure_programs("prog_x9", "prog_x10")
"""
    assert set(names_in_python(source)) == {
        "fence_x1",
        "prog_x2",
        "prog_x3",
        "prog_x4",
        "prog_x5",
        "fence_x6",
        "ocf:heartbeat:X7",
        "/usr/lib/x8/thing",
        "prog_x9",
        "prog_x10",
    }
    assert set(names_in_yaml("agent: fence_y1\nagent: ocf:pacemaker:Y2\n")) == {
        "fence_y1",
        "ocf:pacemaker:Y2",
    }
    with pytest.raises(AssertionError, match="debian-packages:1"):
        read_manifest("nonsense\n")
