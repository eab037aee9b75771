"""OCF resource agents, run unchanged: ClusterLabs' resource-agents work under hastack.

The agent is a script at `<OCF_ROOT>/resource.d/<provider>/<type>`, called with the action as
its argument and its parameters in the environment (`OCF_RESKEY_<name>`), as Pacemaker's
executor calls it. See https://github.com/ClusterLabs/OCF-spec for the standard.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from hastack.executor.agents.base import AgentMetadata, Driver, OcfRc, OpRequest, OpResult
from hastack.model.durations import parse_duration
from hastack.processes import set_autogroup_nice

__all__ = ["OCF_ROOT", "MetadataCache", "OcfDriver", "parse_metadata"]

OCF_ROOT = "/usr/lib/ocf"
_METADATA_TIMEOUT = 10.0
_OUTPUT_LIMIT = 64 * 1024  # what we keep of an agent's output: enough for any exit reason
_BASE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def parse_metadata(text: str, name: str) -> AgentMetadata:
    """An agent's `meta-data` XML; ValueError if it is not that."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ValueError(f"meta-data is not valid XML ({exc})") from None
    if root.tag != "resource-agent":
        raise ValueError(f"meta-data root is <{root.tag}>, expected <resource-agent>")
    params, required = set(), set()
    for p in root.iterfind("./parameters/parameter"):
        pname = p.get("name")
        if not pname:
            continue
        params.add(pname)
        if p.get("required") in ("1", "true", "yes"):
            required.add(pname)
    timeouts: dict[str, float] = {}
    actions = set()
    for a in root.iterfind("./actions/action"):
        aname = a.get("name")
        if not aname:
            continue
        actions.add(aname)
        if a.get("timeout") and aname not in timeouts:
            with contextlib.suppress(ValueError):
                timeouts[aname] = parse_duration(a.get("timeout"))
    return AgentMetadata(
        name=root.get("name", name),
        required=frozenset(required),
        parameters=frozenset(params),
        timeouts=timeouts,
        promotable="promote" in actions and "demote" in actions,
    )


def _exit_reason(stdout: bytes, stderr: bytes) -> str:
    """The agent's own explanation: `ocf-exit-reason:` lines first, else its last line."""
    text = (stderr + b"\n" + stdout).decode("utf-8", "replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("ocf-exit-reason:"):
            return line[len("ocf-exit-reason:") :].strip()
    return lines[-1][:300] if lines else ""


_Read = tuple[AgentMetadata | None, str]  # the metadata, or why there is none


class MetadataCache:
    """Each OCF agent script's meta-data, read once per version of the script (its path,
    size and modification time) however many primitives use it, and once for all the
    operations that ask while it is being read. Pacemaker's controller caches an agent's
    meta-data the same way. Without it, a node taking on 150 `ocf:heartbeat:Dummy`
    primitives ran `Dummy meta-data` 150 times, at once, beside its 150 probes
    (docs/control-plane.md, "What a node spends taking a configuration on"). A failed
    read is not kept: the next operation reads again."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[tuple[int, int], AgentMetadata]] = {}
        self._reading: dict[tuple[str, int, int], asyncio.Future[_Read]] = {}

    async def read(self, driver: OcfDriver) -> _Read:
        try:
            st = driver.path.stat()
        except OSError:
            return None, f"agent script {driver.path} is not installed"
        version = (st.st_mtime_ns, st.st_size)
        known = self._known.get(str(driver.path))
        if known is not None and known[0] == version:
            return known[1], ""
        key = (str(driver.path), *version)
        reading = self._reading.get(key)
        if reading is None:
            reading = asyncio.ensure_future(driver.read_metadata())
            self._reading[key] = reading
            reading.add_done_callback(lambda done: self._done(key, done))
        # Shielded: an operation cancelled while it waits leaves the read to the others.
        return await asyncio.shield(reading)

    def _done(self, key: tuple[str, int, int], done: asyncio.Future[_Read]) -> None:
        del self._reading[key]
        if done.cancelled() or done.exception() is not None:
            return
        metadata, _ = done.result()
        if metadata is not None:
            self._known[key[0]] = ((key[1], key[2]), metadata)


class OcfDriver(Driver):
    def __init__(
        self,
        provider: str,
        agent_type: str,
        *,
        root: str = OCF_ROOT,
        extra_dirs: tuple[str, ...] = (),
        metadata_cache: MetadataCache | None = None,
    ) -> None:
        """`metadata_cache`: shared by the drivers of one executor (each primitive has its
        own driver); without one the driver keeps its own."""
        self.provider = provider
        self.type = agent_type
        self.root = root
        candidates = [Path(d) / provider / agent_type for d in extra_dirs]
        candidates.append(Path(root) / "resource.d" / provider / agent_type)
        self.path = next((c for c in candidates if c.exists()), candidates[-1])
        self._metadata_cache = metadata_cache or MetadataCache()
        self.metadata_problem = ""

    def _env(self, request: OpRequest) -> dict[str, str]:
        path = os.environ.get("PATH", _BASE_PATH)
        # hastack's crm_attribute, crm_master and attrd_updater come first
        # (docs/attributes.md), so agents that set node attributes run unchanged.
        shims = request.cluster.get("shim-dir")
        env = {
            "PATH": f"{shims}:{path}" if shims else path,
            "OCF_ROOT": self.root,
            "OCF_RA_VERSION_MAJOR": "1",
            "OCF_RA_VERSION_MINOR": "1",
            "OCF_RESOURCE_INSTANCE": request.instance,
            "OCF_RESOURCE_TYPE": self.type,
            "OCF_RESOURCE_PROVIDER": self.provider,
            "OCF_CHECK_LEVEL": "0",
            "HA_RSCTMP": str(Path(request.state_dir) / "rsctmp"),
            "LANG": "C",
        }
        if request.cluster.get("attrd-socket"):
            env["HASTACK_ATTRD_SOCKET"] = request.cluster["attrd-socket"]
        if request.cluster.get("node"):
            env["HASTACK_NODE"] = request.cluster["node"]
        for key, value in request.params.items():
            env[f"OCF_RESKEY_{key}"] = value
        for key, value in request.meta.items():
            env[f"OCF_RESKEY_CRM_meta_{key}"] = value
        return env

    async def execute(self, request: OpRequest) -> OpResult:
        if not self.path.is_file():
            return OpResult(OcfRc.ERR_INSTALLED, f"agent script {self.path} is not installed")
        if not os.access(self.path, os.X_OK):
            return OpResult(OcfRc.ERR_INSTALLED, f"agent script {self.path} is not executable")
        Path(request.state_dir, "rsctmp").mkdir(parents=True, exist_ok=True)
        result, _ = await self._run(request)
        return result

    async def _run(self, request: OpRequest) -> tuple[OpResult, str]:
        argv = [str(self.path), request.op]
        if request.netns:
            argv = ["ip", "netns", "exec", request.netns, *argv]
        if request.nice > 0:
            # Below the agent's own priority: a burst of agent scripts must not starve the
            # agent's renewals and heartbeats, nor etcd (docs/control-plane.md).
            argv = ["nice", "-n", str(request.nice), *argv]
        return await run_process(argv, self._env(request), request.timeout, nice=request.nice)

    async def metadata(self) -> AgentMetadata | None:
        metadata, self.metadata_problem = await self._metadata_cache.read(self)
        return metadata

    async def read_metadata(self) -> _Read:
        """Run the script's `meta-data` action (MetadataCache.read calls it)."""
        if not self.path.is_file():
            return None, f"agent script {self.path} is not installed"
        request = OpRequest(self.type, self.type, "meta-data", {}, {}, _METADATA_TIMEOUT)
        result, stdout = await self._run(request)
        if result.rc != OcfRc.SUCCESS:
            return None, f"meta-data failed: {OcfRc.describe(result.rc)} {result.reason}"
        try:
            return parse_metadata(stdout, f"{self.provider}:{self.type}"), ""
        except ValueError as exc:
            return None, str(exc)


async def run_process(
    argv: list[str], env: dict[str, str], timeout: float, *, nice: int = 0
) -> tuple[OpResult, str]:
    """Run one agent action; on timeout kill its whole process group. Returns the result
    and the agent's standard output (meta-data is read from it). With `nice`, the action's
    session gets that priority too: it runs in a session of its own, and where the kernel
    groups sessions (autogroups, on by default in Debian) a nice value inside one counts
    only against that session's other processes."""
    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        return OpResult(OcfRc.ERR_INSTALLED, f"cannot run {argv[0]}: {exc.strerror}"), ""
    if nice > 0:
        set_autogroup_nice(proc.pid, nice)
    try:
        async with asyncio.timeout(timeout):
            stdout, stderr = await proc.communicate()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        return (
            OpResult(
                OcfRc.ERR_GENERIC,
                f"timed out after {timeout:g}s (killed)",
                time.monotonic() - started,
                timed_out=True,
            ),
            "",
        )
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()  # reaped now, not by a transport collected after the loop closed
        raise
    duration = time.monotonic() - started
    rc = proc.returncode if proc.returncode is not None else OcfRc.ERR_GENERIC
    reason = _exit_reason(stdout[-_OUTPUT_LIMIT:], stderr[-_OUTPUT_LIMIT:])
    text = stdout.decode("utf-8", "replace")
    if rc < 0:
        return OpResult(OcfRc.ERR_GENERIC, f"killed by signal {-rc}", duration), text
    if rc not in OcfRc.__members__.values():
        why = f"unknown exit code {rc}" + (f": {reason}" if reason else "")
        return OpResult(OcfRc.ERR_GENERIC, why, duration), text
    return OpResult(rc, reason, duration), text
