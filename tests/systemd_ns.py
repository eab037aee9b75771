"""A real systemd for tests: systemd as PID 1 of its own PID, mount, cgroup, network, UTS and
IPC namespaces, seeing only the units a test gives it.

* Its cgroups live under a group made for it (`hastack-test-...`) in each hierarchy, entered
  before `unshare --cgroup`, so the namespace's cgroup root is that group: systemd's slices
  and scopes are made inside it, never at the machine's root; the group is removed after.
* `/run` and `/sys/fs/cgroup` are its own (tmpfs and fresh cgroup mounts); `/proc` too.
* `SYSTEMD_UNIT_PATH` is a directory of the test's units, the few targets every service
  depends on, and the machine's D-Bus system bus units (the way clients reach systemd), so
  nothing else of the machine (udev, journald, getty, ...) is started.
* It is ended by SIGKILL of its PID 1, which ends the whole PID namespace.

The system bus (dbus-daemon, started by systemd from the machine's own dbus.socket and
dbus.service) lives in the namespace's /run, so code under test runs inside, through
`nsenter`, as a program on that host would.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

SYSTEMD = "/lib/systemd/systemd"
STUB_TARGETS = ("sysinit.target", "basic.target", "shutdown.target", "sockets.target")
BUS_UNITS = ("dbus.socket", "dbus.service")
BUS_SOCKET = "run/dbus/system_bus_socket"


@dataclass
class SystemdNamespace:
    pid: int  # systemd's PID, seen from outside
    log: Path

    def run(
        self, argv: list[str], env: Mapping[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace (its mounts and PIDs)."""
        return subprocess.run(
            ["nsenter", "-t", str(self.pid), "-m", "-p", "--", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, **(env or {})},
        )


def _layout() -> tuple[list[Path], str] | str:
    """The cgroup hierarchies to give systemd a group in, and how to mount them inside; or why
    this machine's layout is not one we handle."""
    root = Path("/sys/fs/cgroup")
    if (root / "systemd" / "cgroup.procs").exists():  # hybrid: named v1 + v2 under unified/
        hierarchies = [root / "systemd"]
        mounts = (
            "mount -t tmpfs tmpfs /sys/fs/cgroup && mkdir /sys/fs/cgroup/systemd && "
            "mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd"
        )
        if (root / "unified" / "cgroup.procs").exists():
            hierarchies.append(root / "unified")
            mounts += (
                " && mkdir /sys/fs/cgroup/unified && "
                "mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified"
            )
        return hierarchies, mounts
    if (root / "cgroup.controllers").exists():  # unified only
        return [root], "mount -t cgroup2 cgroup2 /sys/fs/cgroup"
    return f"unknown cgroup layout under {root} (neither a named systemd v1 hierarchy nor v2)"


def why_not() -> str | None:
    """Why this machine cannot run systemd in a namespace, or None."""
    if sys.platform != "linux":
        return "systemd runs on Linux only"
    if os.geteuid() != 0:
        return "systemd as PID 1 of its own PID, mount and cgroup namespaces needs root"
    if not Path(SYSTEMD).exists():
        return f"{SYSTEMD} is not installed (apt-get install systemd)"
    if not all((Path("/lib/systemd/system") / u).exists() for u in BUS_UNITS):
        return "the D-Bus system bus is not installed (apt-get install dbus)"
    missing = [p for p in ("unshare", "nsenter") if shutil.which(p) is None]
    if missing:
        return f"missing {', '.join(missing)} (apt-get install util-linux)"
    layout = _layout()
    return layout if isinstance(layout, str) else None


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


@contextlib.contextmanager
def systemd_namespace(tmp: Path, units: Mapping[str, str]) -> Iterator[SystemdNamespace]:
    reason = why_not()
    if reason is not None:
        pytest.skip(reason)
    layout = _layout()
    assert not isinstance(layout, str)
    hierarchies, mounts = layout
    unit_dir = tmp / "units"
    unit_dir.mkdir(parents=True)
    for target in STUB_TARGETS:
        (unit_dir / target).write_text(f"[Unit]\nDescription={target} (test stub)\n")
    for unit in BUS_UNITS:
        shutil.copy(Path("/lib/systemd/system") / unit, unit_dir / unit)
    (unit_dir / "hastack-test.target").write_text(
        "[Unit]\nDescription=what the test boots\nWants=dbus.socket dbus.service\n"
    )
    for name, text in units.items():
        (unit_dir / name).write_text(text)
    group = f"hastack-test-{os.getpid()}-{secrets.token_hex(3)}"
    groups = [h / group for h in hierarchies]
    inner = (
        "set -e; mount --make-rprivate /; mount -t proc proc /proc; "
        f"mount -t tmpfs tmpfs /run; {mounts}; "
        f"export container=hastack-test SYSTEMD_UNIT_PATH={unit_dir}; "
        f"exec {SYSTEMD} --system --unit=hastack-test.target --log-target=console"
    )
    outer = (
        "set -e; "
        + "; ".join(f"mkdir {g} && echo $$ > {g}/cgroup.procs" for g in groups)
        + '; exec unshare --pid --fork --mount --net --uts --ipc --cgroup sh -c "$0"'
    )
    log = tmp / "systemd.log"
    with log.open("w") as out:
        starter = subprocess.Popen(
            ["sh", "-c", outer, inner],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    systemd_pid = None
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            kids = _children(starter.pid)
            if kids and Path(f"/proc/{kids[0]}/root/{BUS_SOCKET}").exists():
                systemd_pid = kids[0]
                break
            if starter.poll() is not None:
                break
            time.sleep(0.05)
        if systemd_pid is None:
            tail = log.read_text(errors="replace")[-800:]
            pytest.skip(f"systemd did not come up as PID 1 in a namespace within 20 s: {tail}")
        yield SystemdNamespace(systemd_pid, log)
    finally:
        for pid in [systemd_pid, *(_children(starter.pid) if systemd_pid is None else [])]:
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if starter.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(starter.pid, signal.SIGKILL)
        starter.wait(timeout=30)
        for g in groups:
            _remove_group(g)


def _remove_group(group: Path) -> None:
    """Remove a cgroup and every group under it (deepest first; empty once its processes are
    gone, which takes the kernel a moment after SIGKILL)."""
    if not group.exists():
        return
    for _attempt in range(50):
        dirs = sorted((p for p in group.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for d in [*dirs, group]:
            with contextlib.suppress(OSError):
                d.rmdir()
        if not group.exists():
            return
        time.sleep(0.1)
