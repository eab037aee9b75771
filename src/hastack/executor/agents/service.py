"""`hastack:service`: supervise a command as a cluster resource.

Start runs `command` through `sh -c` in its own session with output to a log file, writes a
pidfile (pid and the process's start time, so a reused pid is never mistaken for it), and
waits until it is healthy. The process does not belong to the agent: it outlives an agent
restart, and the restarted agent adopts it through the probe. Stop sends SIGTERM to the
process group and SIGKILL if it lingers. Monitor checks the process and its health.

The command sees HASTACK_NODE, HASTACK_NODE_ADDRESS (the node's first address)
and HASTACK_INSTANCE (`api:2`), so one clone's command can bind each node's own address.

Parameters: command (required); health-cmd (a shell command that exits 0 when healthy),
health-port (`PORT` or `HOST:PORT`, a TCP connect), health-url (an HTTP GET that must answer
2xx/3xx); cwd; stop-grace (seconds before SIGKILL, default 5).

Work assignment (docs/assign.md): the command also sees HASTACK_ASSIGN_DIR, where the
executor writes `<name>.json`. A change of entities is a `notify` with
notify_operation=assign: `assign-cmd` (if set) runs with HASTACK_ASSIGN_NAME,
HASTACK_ASSIGN_ACTIVE, HASTACK_ASSIGN_STANDBY, HASTACK_ASSIGN_RELEASED (space-separated) and
HASTACK_ASSIGN_GENERATION and must exit 0; with `assign-ack: true` the notification succeeds
only once the instance has written `<name>.applied` with that generation
(hastack.executor.assignfile.watch does).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import ClassVar

from hastack.executor.agents.base import NativeAgent, OcfRc, OpRequest, OpResult
from hastack.executor.agents.health import check
from hastack.executor.assignfile import wait_applied
from hastack.processes import ProcessRecord, is_alive, start_ticks, wait_exit

__all__ = ["ServiceAgent"]

_POLL = 0.05


class ServiceAgent(NativeAgent):
    name: ClassVar[str] = "service"
    parameters: ClassVar[dict[str, bool]] = {
        "command": True,
        "health-cmd": False,
        "health-port": False,
        "health-url": False,
        "cwd": False,
        "stop-grace": False,
        "assign-cmd": False,
        "assign-ack": False,
    }

    async def execute(self, request: OpRequest) -> OpResult:
        started = time.monotonic()
        if not request.params.get("command"):
            return OpResult(OcfRc.ERR_CONFIGURED, "parameter 'command' is required")
        op = request.op
        if op == "start":
            rc, reason = await self._start(request)
        elif op == "stop":
            rc, reason = await self._stop(request)
        elif op in ("monitor", "status"):
            rc, reason = await self._monitor(request)
        elif op == "notify" and request.meta.get("notify_operation") == "assign":
            rc, reason = await self._assign(request)
        elif op in ("validate-all", "meta-data"):
            rc, reason = OcfRc.SUCCESS, ""
        else:
            rc, reason = OcfRc.ERR_UNIMPLEMENTED, f"{op} is not implemented by hastack:service"
        return OpResult(rc, reason, time.monotonic() - started)

    # ---- files ----------------------------------------------------------------------------

    @staticmethod
    def _base(request: OpRequest) -> Path:
        # One directory per instance and command: a changed command is a different service.
        digest = hashlib.sha256(request.params["command"].encode()).hexdigest()[:8]
        safe = request.instance.replace(":", "_").replace("/", "_")
        return Path(request.state_dir) / "services" / f"{safe}-{digest}"

    def running_pid(self, request: OpRequest) -> int | None:
        """The pid of the service's process while it runs (for a signal such as a reload)."""
        record = self._record(request)
        return record.pid if record is not None and is_alive(record) else None

    def _record(self, request: OpRequest) -> ProcessRecord | None:
        path = self._base(request) / "pid"
        try:
            return ProcessRecord.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    # ---- operations -------------------------------------------------------------------------

    async def _start(self, request: OpRequest) -> tuple[int, str]:
        record = self._record(request)
        if record is not None and is_alive(record):
            return await self._wait_healthy(request, record)
        base = self._base(request)
        base.mkdir(parents=True, exist_ok=True)
        argv = ["sh", "-c", request.params["command"]]
        if request.netns:
            argv = ["ip", "netns", "exec", request.netns, *argv]
        log = (base / "output.log").open("ab")
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=request.params.get("cwd") or None,
                env=service_env(request),
                start_new_session=True,
            )
        except OSError as exc:
            return OcfRc.ERR_INSTALLED, f"cannot start: {exc.strerror}"
        finally:
            log.close()
        ticks = start_ticks(proc.pid)
        if ticks is None:
            await proc.wait()
            return OcfRc.ERR_GENERIC, self._exit_reason(request, proc.returncode)
        record = ProcessRecord(proc.pid, ticks)
        (base / "pid").write_text(json.dumps(record.to_json()))
        # Reap it when it exits so it never lingers as a zombie of the agent.
        asyncio.get_running_loop().create_task(proc.wait())
        return await self._wait_healthy(request, record)

    async def _wait_healthy(self, request: OpRequest, record: ProcessRecord) -> tuple[int, str]:
        # Stop waiting a little before the operation's timeout so the reason is ours
        # ("not healthy: ...") rather than a bare "timed out".
        deadline = time.monotonic() + max(0.5, request.timeout - 0.5)
        while True:
            if not is_alive(record):
                return OcfRc.ERR_GENERIC, self._exit_reason(request, None)
            ok, why = await self._healthy(request)
            if ok:
                return OcfRc.SUCCESS, ""
            if time.monotonic() >= deadline:
                return OcfRc.ERR_GENERIC, f"not healthy after {request.timeout:g}s: {why}"
            await asyncio.sleep(_POLL)

    def _exit_reason(self, request: OpRequest, code: int | None) -> str:
        log = self._base(request) / "output.log"
        last = ""
        with contextlib.suppress(OSError):
            lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
            last = lines[-1][:200] if lines else ""
        what = f"exited with {code}" if code is not None else "exited"
        return f"{what}" + (f": {last}" if last else "")

    async def _stop(self, request: OpRequest) -> tuple[int, str]:
        record = self._record(request)
        if record is None or not is_alive(record):
            (self._base(request) / "pid").unlink(missing_ok=True)
            return OcfRc.SUCCESS, ""
        grace = float(request.params.get("stop-grace", "5"))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(record.pid, signal.SIGTERM)
        if not await wait_exit(record, min(grace, max(0.0, request.timeout - 1.0))):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(record.pid, signal.SIGKILL)
            await wait_exit(record, max(1.0, request.timeout))
        (self._base(request) / "pid").unlink(missing_ok=True)
        return OcfRc.SUCCESS, ""

    async def _monitor(self, request: OpRequest) -> tuple[int, str]:
        record = self._record(request)
        if record is None:
            return OcfRc.NOT_RUNNING, ""
        if not is_alive(record):
            return OcfRc.NOT_RUNNING, self._exit_reason(request, None)
        ok, why = await self._healthy(request)
        if not ok:
            return OcfRc.ERR_GENERIC, f"health check failed: {why}"
        return OcfRc.SUCCESS, ""

    async def _assign(self, request: OpRequest) -> tuple[int, str]:
        """Tell the instance its new entities (the file is written already) and wait for its
        confirmation. A stopped instance serves nothing: releasing needs no word from it."""
        meta = request.meta
        name = meta.get("notify_assign_name", "")
        generation = int(meta.get("notify_assign_generation", "0") or 0)
        taking = bool(meta.get("notify_assign_active") or meta.get("notify_assign_standby"))
        record = self._record(request)
        if record is None or not is_alive(record):
            if taking:
                return OcfRc.ERR_GENERIC, "not running: cannot take entities"
            return OcfRc.SUCCESS, ""
        deadline = time.monotonic() + max(0.5, request.timeout - 0.5)
        command = request.params.get("assign-cmd")
        if command:
            env = {
                **service_env(request),
                "HASTACK_ASSIGN_NAME": name,
                "HASTACK_ASSIGN_ACTIVE": meta.get("notify_assign_active", ""),
                "HASTACK_ASSIGN_STANDBY": meta.get("notify_assign_standby", ""),
                "HASTACK_ASSIGN_RELEASED": meta.get("notify_assign_released", ""),
                "HASTACK_ASSIGN_GENERATION": str(generation),
            }
            argv = ["sh", "-c", command]
            if request.netns:
                argv = ["ip", "netns", "exec", request.netns, *argv]
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
            try:
                async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                    out, _ = await proc.communicate()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
                return OcfRc.ERR_GENERIC, "assign-cmd timed out"
            if proc.returncode != 0:
                last = out.decode(errors="replace").strip().splitlines()[-1:] or [""]
                return OcfRc.ERR_GENERIC, f"assign-cmd exited with {proc.returncode}: {last[0]}"
        if request.params.get("assign-ack") == "true":
            directory = Path(request.state_dir) / "assign"
            if not await wait_applied(
                directory, name, generation, deadline, lambda: is_alive(record)
            ):
                if not is_alive(record):
                    return OcfRc.ERR_GENERIC, "exited before confirming its entities"
                return OcfRc.ERR_GENERIC, f"did not confirm generation {generation} in time"
        return OcfRc.SUCCESS, ""

    # ---- health -----------------------------------------------------------------------------

    async def _healthy(self, request: OpRequest) -> tuple[bool, str]:
        params = request.params
        checks = []
        if params.get("health-cmd"):
            checks.append(("cmd", params["health-cmd"]))
        if params.get("health-port"):
            checks.append(("port", params["health-port"]))
        if params.get("health-url"):
            checks.append(("url", params["health-url"]))
        for kind, value in checks:
            ok, why = await _check(kind, value, request.netns, min(5.0, request.timeout))
            if not ok:
                return False, why
        return True, ""


def service_env(request: OpRequest) -> dict[str, str]:
    """The environment of a service's command and health command: ours plus the node's."""
    return {
        **os.environ,
        "HASTACK_NODE": request.cluster.get("node", ""),
        "HASTACK_NODE_ADDRESS": request.cluster.get("address", ""),
        "HASTACK_INSTANCE": request.instance,
        "HASTACK_ASSIGN_DIR": str(Path(request.state_dir) / "assign"),
        # So that a service can share the cluster's etcd (tooz's etcd3 driver, docs/assign.md).
        "HASTACK_ETCD_ENDPOINTS": request.cluster.get("etcd-endpoints", ""),
        # The node's certificate files for etcd's mutual TLS (paths, never contents).
        **{
            f"HASTACK_ETCD_{k.upper()}": request.cluster[f"etcd-{k}"]
            for k in ("ca", "cert", "key")
            if request.cluster.get(f"etcd-{k}")
        },
    }


async def _check(kind: str, value: str, netns: str | None, timeout: float) -> tuple[bool, str]:
    """One health check. Inside a network namespace it runs as a small child process there."""
    if netns is not None:
        argv = [
            "ip",
            "netns",
            "exec",
            netns,
            sys.executable,
            "-m",
            "hastack.executor.agents.health",
            kind,
            value,
        ]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
            )
            async with asyncio.timeout(timeout):
                out, _ = await proc.communicate()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            return False, f"{kind} check timed out"
        except OSError as exc:
            return False, f"{kind} check could not run: {exc.strerror}"
        return proc.returncode == 0, out.decode(errors="replace").strip()
    return await check(kind, value, timeout)
