"""What the lab does for a `hastack:galera` clone in a scenario: the data directories its
configuration names, made for the server's user before the configuration is stored (a lab
host has no installer, and the agent never creates a missing datadir), and the server's
logs collected with the run's results.

The servers run as `user` (mysql by default, docs/galera.md): every directory above their
datadirs and state directories must let that user through, which the private directories
pytest and `mktemp -d` make (mode 0700) do not.
"""

from __future__ import annotations

import os
import pwd
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "collect_galera_logs",
    "galera_primitives",
    "let_through",
    "prepare_datadirs",
    "primitives_of",
]

_SYSTEM = (Path("/"), Path("/tmp"), Path("/root"), Path("/home"), Path("/var"))


def primitives_of(config: Mapping[str, Any], agent: str) -> list[dict[str, Any]]:
    """Every primitive of `agent` in a configuration mapping (inside groups and clones too)."""
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("agent") == agent and "primitive" in node:
                found.append(node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(config.get("resources", []))
    return found


def galera_primitives(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every hastack:galera primitive of a configuration mapping (inside clones too)."""
    return primitives_of(config, "hastack:galera")


def let_through(path: Path) -> None:
    """Let every user traverse (not list) `path` and the directories above it, up to the
    first system directory."""
    for p in [path, *path.parents]:
        if p in _SYSTEM:
            break
        mode = p.stat().st_mode
        if mode & 0o011 != 0o011:
            p.chmod(mode | 0o011)


def prepare_datadirs(
    config: Mapping[str, Any], nodes: Iterable[str], state_dirs: Iterable[Path]
) -> list[Path]:
    """Create each Galera primitive's datadir for every node (owned by the server's user,
    left as it is when it exists: a node keeps its data across runs), and let that user
    through to them and to the agents' state directories."""
    made: list[Path] = []
    names = list(nodes)
    for primitive in galera_primitives(config):
        params = primitive.get("params") or {}
        template = str(params.get("datadir", ""))
        if not template:
            continue
        user = pwd.getpwnam(str(params.get("user", "mysql")))
        for node in names:
            path = Path(template.replace("{node}", node))
            if not path.exists():
                path.mkdir(parents=True)
                os.chown(path, user.pw_uid, user.pw_gid)
                made.append(path)
            let_through(path.parent)
    for state in state_dirs:
        state.mkdir(parents=True, exist_ok=True)
        let_through(state)
    return made


def collect_galera_logs(state_dir: Path, destination: Path) -> list[Path]:
    """Copy each Galera instance's server log, its last recovery log and its install-db log
    from an agent's state directory (`galera-<resource>-error.log`, `-recover.log`,
    `-install.log`)."""
    copied: list[Path] = []
    for base in sorted((state_dir / "galera").glob("*")):
        for name, label in (
            ("error.log", "error"),
            ("recover-last.log", "recover"),
            ("install.log", "install"),
        ):
            src = base / name
            if src.exists():
                dst = destination / f"galera-{base.name}-{label}.log"
                shutil.copy(src, dst)
                copied.append(dst)
    return copied
