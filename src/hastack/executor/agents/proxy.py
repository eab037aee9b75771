"""`hastack:proxy`: the proxy as a cluster resource, configured inside the cluster configuration.

    - clone: proxy-clone
      resource:
        primitive: proxy
        agent: hastack:proxy
        params:
          config: |
            frontends: [{name: api, bind: ["10.0.0.10:80"], backend: api, freebind: true}]
            backends: [{name: api, cluster: {resource: api, port: 8080}}]
        ops: [{name: monitor, interval: 2s}]

`config` is the proxy's own YAML (docs/proxy.md). Its `cluster` link is filled in from the
node's agent (cluster name and etcd endpoints) when it is left out, so backends can follow
cluster resources without repeating where the store is. Start writes the configuration to the
node's state directory and runs `hastack proxy run` under `hastack:service` supervision;
healthy means the admin endpoint answers (or, without one, the first frontend accepts). When
the parameter changes, the next monitor writes the new file and has the running proxy reload
it (SIGHUP): no restart, no dropped connection.

Parameters: config (required), workers, stop-grace.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shlex
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import yaml

from hastack.errors import ConfigError
from hastack.executor.agents.base import NativeAgent, OcfRc, OpRequest, OpResult, etcd_block
from hastack.executor.agents.service import ServiceAgent
from hastack.model.document import format_path
from hastack.proxy.config import DataPlane, ProxyConfig, parse_address, parse_config
from hastack.proxy.tls import certificate_problems

__all__ = ["ProxyAgent", "proxy_config"]

log = logging.getLogger("hastack.executor")


def proxy_config(text: str, cluster: dict[str, str], source: str = "config") -> ProxyConfig:
    """The `config` parameter validated, with the cluster link filled in from `cluster`
    (name, etcd-endpoints, etcd-root, the node's TLS files) when the text leaves it out.
    Raises ConfigError."""
    config = parse_config(text, source, standalone=not cluster.get("name"))
    if config.cluster is not None or not cluster.get("name"):
        return config
    data = yaml.safe_load(text) or {}
    data["cluster"] = {"name": cluster["name"], "etcd": etcd_block(cluster)}
    return parse_config(yaml.safe_dump(data, sort_keys=False), source)


@functools.lru_cache(maxsize=32)
def _prepared(
    text: str, cluster: tuple[tuple[str, str], ...], source: str, workers: str, data_plane: str
) -> tuple[ProxyConfig, str]:
    """The validated configuration and the file body to run it from. Every operation (a
    monitor each interval) needs them, and they change only with the parameter: computed
    once per text. Raises ConfigError (not cached)."""
    config = proxy_config(text, dict(cluster), source)
    if data_plane:
        config = config.model_copy(update={"data_plane": DataPlane(data_plane)})
    if workers:
        try:
            config = config.model_copy(update={"workers": int(workers)})
        except ValueError:
            raise ConfigError(source, [f"{source}: workers: not a number: {workers!r}"]) from None
    return config, yaml.safe_dump(config.model_dump(mode="json", by_alias=True), sort_keys=False)


class ProxyAgent(NativeAgent):
    name: ClassVar[str] = "proxy"
    parameters: ClassVar[dict[str, bool]] = {"config": True, "workers": False, "stop-grace": False}
    default_timeouts: ClassVar[dict[str, float]] = {"start": 20.0, "stop": 20.0, "monitor": 10.0}
    data_plane: ClassVar[str] = ""  # "": as the configuration says (default builtin)

    def __init__(self) -> None:
        self._service = ServiceAgent()

    async def execute(self, request: OpRequest) -> OpResult:
        started = time.monotonic()
        text = request.params.get("config", "")
        if not text.strip():
            return OpResult(OcfRc.ERR_CONFIGURED, "parameter 'config' is required")
        cluster = tuple(sorted(request.cluster.items()))
        try:
            config, body = _prepared(
                text,
                cluster,
                f"{request.primitive}.config",
                request.params.get("workers", ""),
                self.data_plane,
            )
        except ConfigError as exc:
            return OpResult(OcfRc.ERR_CONFIGURED, str(exc), time.monotonic() - started)
        if request.op in ("start", "validate-all"):
            # The certificate files are on this node: checked here, not when the cluster
            # configuration was applied elsewhere.
            problems = certificate_problems(config)
            if problems:
                why = "; ".join(f"{format_path(loc)}: {message}" for loc, message in problems)
                return OpResult(OcfRc.ERR_CONFIGURED, why, time.monotonic() - started)
        if request.op in ("validate-all", "meta-data"):
            return OpResult(OcfRc.SUCCESS, "", time.monotonic() - started)
        files = _Files(request)
        service = replace(request, params=self._service_params(request, config, files))
        if request.op == "start":
            files.write(body)
        elif request.op in ("monitor", "status") and files.applied() != _digest(body):
            self._reload(service, files, body)
        return await self._service.execute(service)

    def running_pid(self, request: OpRequest) -> int | None:
        """The pid of the instance's proxy while it runs."""
        command = {"command": _command(_Files(request))}
        return self._service.running_pid(replace(request, params=command))

    def _reload(self, service: OpRequest, files: _Files, body: str) -> None:
        """The `config` parameter changed while the proxy runs: the proxy reads its file
        again (SIGHUP, as `hastack proxy reload`): new workers on the same sockets, the old
        ones finish their sessions. Nothing is dropped, nothing restarts."""
        pid = self._service.running_pid(service)
        files.write(body)
        if pid is None:
            return  # not running: the monitor says so, and a start reads the new file
        try:
            os.kill(pid, signal.SIGHUP)
        except ProcessLookupError:
            return
        log.info("proxy %s: configuration changed; reload asked of pid %d", service.instance, pid)

    @staticmethod
    def _service_params(request: OpRequest, config: ProxyConfig, files: _Files) -> dict[str, str]:
        params = {"command": _command(files)}
        if config.admin is not None:
            host, port = parse_address(config.admin.bind)
            params["health-url"] = f"http://{host}:{port}/health"
        else:
            host, port = parse_address(config.frontends[0].bind[0])
            params["health-port"] = f"{host}:{port}"
        if request.params.get("stop-grace"):
            params["stop-grace"] = request.params["stop-grace"]
        return params


def _command(files: _Files) -> str:
    # The command names the instance's file, not its content: a new configuration is a
    # reload of the same process (hastack:service would take a new command for another
    # service, and lose the running one).
    # Writer changes of sticky backends go to the node's event log beside the agent's.
    argv = [sys.executable, "-m", "hastack", "proxy", "run", "-c", str(files.config)]
    argv += ["--events", str(files.events)]
    return "exec " + shlex.join(argv)


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


class _Files:
    """The instance's configuration file and the digest of what the process was given."""

    def __init__(self, request: OpRequest) -> None:
        safe = request.instance.replace(":", "_").replace("/", "_")
        folder = Path(request.state_dir) / "proxy"
        self.config = folder / f"{safe}.yaml"
        self.digest = folder / f"{safe}.applied"
        self.events = Path(request.state_dir) / "events.jsonl"

    def applied(self) -> str:
        try:
            return self.digest.read_text().strip()
        except OSError:
            return ""

    def write(self, body: str) -> None:
        self.config.parent.mkdir(parents=True, exist_ok=True)
        # Whole or not at all: the running proxy may read it at any moment.
        partial = self.config.with_suffix(".yaml.new")
        partial.write_text(body)
        partial.replace(self.config)
        self.digest.write_text(_digest(body) + "\n")


class HaproxyAgent(ProxyAgent):
    """`hastack:haproxy`: the same resource with Debian's haproxy as the data plane.

    The `config` parameter is the same proxy YAML; hastack renders HAProxy's configuration
    from it, runs haproxy, keeps the control plane (checks, cluster state, run-time commands)
    and pushes server changes through HAProxy's run-time API (hastack.proxy.haproxy).
    """

    name: ClassVar[str] = "haproxy"
    data_plane: ClassVar[str] = DataPlane.HAPROXY.value
