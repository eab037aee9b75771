"""Installing the Debian packages a benchmark's anchor needs (HAProxy, keepalived,
crm_simulate, ...), with apt-get, only when their programs are missing. Needs root.

Which package provides a program is read from scripts/debian-packages, the one list of
everything the project installs (its `bench` lines are installed here, on demand)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

MANIFEST = Path(__file__).resolve().parent.parent / "scripts" / "debian-packages"


def package_of(program: str) -> str:
    for raw in MANIFEST.read_text().splitlines():
        line = raw.split("#", 1)[0].split()
        if len(line) >= 3 and program in line[2:]:
            return line[1]
    raise SystemExit(f"{program}: not in {MANIFEST}; add the Debian package that provides it")


def ensure_programs(*programs: str) -> None:
    """Install the packages of the missing `programs` (as listed in the manifest)."""
    missing = sorted({package_of(p) for p in programs if shutil.which(p) is None})
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"missing {', '.join(missing)}: run as root or apt-get install them")
    print(f"installing {' '.join(missing)} with apt-get ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, capture_output=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
        check=True,
        env=env,
        capture_output=True,
    )
