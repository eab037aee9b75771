"""The proxy's mysql and galera checks against real MariaDB servers (Debian's mariadb-server
and galera-4), on loopback with private data directories.

A one-node Galera cluster bootstrapped here is Synced (wsrep_local_state 4) and Primary: the
galera check passes. A plain MariaDB without the wsrep provider passes the mysql check but
not the galera check. A node whose server was killed fails both.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hastack.proxy.checks import run_check
from hastack.proxy.config import CheckSpec
from helpers import wait_until
from test_proxy_support import free_port

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        shutil.which("mariadbd") is None or shutil.which("mariadb-install-db") is None,
        reason="mariadb-server is not installed (scripts/setup installs it)",
    ),
]

HOST = "127.0.0.1"
GALERA = "/usr/lib/galera/libgalera_smm.so"


def _cnf(base: Path, port: int, galera: bool) -> Path:
    lines = [
        "[mariadbd]",
        f"datadir={base / 'data'}",
        f"socket={base / 'sock'}",
        f"pid-file={base / 'pid'}",
        f"log-error={base / 'error.log'}",
        f"port={port}",
        f"bind-address={HOST}",
        "skip-name-resolve",
        "innodb_buffer_pool_size=16M",
        "innodb_log_file_size=8M",
        "performance_schema=OFF",
        "binlog_format=ROW",
        "default_storage_engine=InnoDB",
        "innodb_autoinc_lock_mode=2",
    ]
    if galera:
        gport = free_port()
        lines += [
            "wsrep_on=ON",
            f"wsrep_provider={GALERA}",
            "wsrep_cluster_address=gcomm://",
            f"wsrep_node_address={HOST}:{gport}",
            f"wsrep_provider_options=gmcast.listen_addr=tcp://{HOST}:{gport}",
            "wsrep_cluster_name=hastack-test",
            "wsrep_sst_method=rsync",
        ]
    path = base / "my.cnf"
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.contextmanager
def mariadb(base: Path, *, galera: bool) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A running mariadbd with user `check`/`secret`; yields (port, process)."""
    base.mkdir(parents=True)
    (base / "data").mkdir()
    port = free_port()
    cnf = _cnf(base, port, galera)
    subprocess.run(
        [
            "mariadb-install-db",
            f"--defaults-file={cnf}",
            "--user=root",
            "--auth-root-authentication-method=normal",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    argv = ["mariadbd", f"--defaults-file={cnf}", "--user=root"]
    if galera:
        argv.append("--wsrep-new-cluster")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:

        def ready() -> bool:
            return (base / "sock").exists() and proc.poll() is None

        wait_until(ready, 30, 0.1)
        subprocess.run(
            [
                "mariadb",
                f"--socket={base / 'sock'}",
                "-uroot",
                "-e",
                "CREATE USER 'check'@'%' IDENTIFIED BY 'secret';",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


def spec(kind: str) -> CheckSpec:
    return CheckSpec.model_validate(
        {"type": kind, "mysql": {"user": "check", "password": "secret"}}
    )


async def test_galera_check_on_a_real_synced_node_and_a_plain_server(tmp_path: Path) -> None:
    with mariadb(tmp_path / "galera", galera=True) as (port, proc):
        synced = await run_check(spec("galera"), HOST, port, 5.0)
        assert synced.ok, synced.message
        assert "Synced" in synced.message
        assert (await run_check(spec("mysql"), HOST, port, 5.0)).ok
        proc.kill()
        proc.wait()
        t0 = time.monotonic()
        dead = await run_check(spec("galera"), HOST, port, 5.0)
        assert not dead.ok
        assert time.monotonic() - t0 < 5.0
    with mariadb(tmp_path / "plain", galera=False) as (port, _proc):
        assert (await run_check(spec("mysql"), HOST, port, 5.0)).ok
        plain = await run_check(spec("galera"), HOST, port, 5.0)
        assert not plain.ok
        assert "not a Galera node" in plain.message, plain.message
