"""Installing the Debian packages a benchmark's anchor needs (HAProxy, keepalived,
crm_simulate), with apt-get, only when their programs are missing. Needs root."""

from __future__ import annotations

import os
import shutil
import subprocess


def ensure_programs(*wanted: tuple[str, str]) -> None:
    """`wanted` is (program, Debian package) pairs; installs the packages of missing programs."""
    missing = sorted({pkg for program, pkg in wanted if shutil.which(program) is None})
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
