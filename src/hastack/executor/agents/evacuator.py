"""`hastack:evacuator`: the evacuator as a cluster resource (docs/compute.md).

    - primitive: evacuator
      agent: hastack:evacuator
      params: {nova-url: "http://10.0.0.10:8774/v2.1", parallel: "4"}
      ops: [{name: monitor, interval: 5s}]

Keep it on controllers (`#kind eq cluster`): a single instance, moved by the cluster when its
controller dies. It reaches the store with the node agent's cluster name and endpoints and
runs `python -m hastack.compute.evacuator` under `hastack:service` supervision.

Parameters: nova-url (required), token (a Keystone token; none: no auth), tag (the evacuable
tag, default `evacuable`; empty evacuates every instance), parallel (evacuations in flight
at once, default 4), timeout (per Nova call, default 5s).
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Mapping
from dataclasses import replace
from typing import ClassVar

from hastack.executor.agents.base import NativeAgent, OcfRc, OpRequest, OpResult, etcd_block
from hastack.executor.agents.service import ServiceAgent
from hastack.model.durations import parse_duration

__all__ = ["EvacuatorAgent"]


class EvacuatorAgent(NativeAgent):
    name: ClassVar[str] = "evacuator"
    parameters: ClassVar[dict[str, bool]] = {
        "nova-url": True,
        "token": False,
        "tag": False,
        "parallel": False,
        "timeout": False,
    }
    default_timeouts: ClassVar[dict[str, float]] = {"start": 20.0, "stop": 20.0, "monitor": 10.0}

    def __init__(self) -> None:
        self._service = ServiceAgent()

    async def execute(self, request: OpRequest) -> OpResult:
        url = request.params.get("nova-url", "").strip()
        if not url:
            return OpResult(OcfRc.ERR_CONFIGURED, "parameter 'nova-url' is required")
        cluster = request.cluster
        if not cluster.get("name") or not cluster.get("etcd-endpoints"):
            return OpResult(OcfRc.ERR_CONFIGURED, "the node's agent gave no cluster to follow")
        options = _options(request.params)
        if isinstance(options, str):
            return OpResult(OcfRc.ERR_CONFIGURED, options)
        if request.op in ("validate-all", "meta-data"):
            return OpResult(OcfRc.SUCCESS, "")
        argv = [
            sys.executable, "-m", "hastack.compute.evacuator",
            "--cluster", cluster["name"],
            # The node's own store access, certificates and all, as a JSON `etcd:` block.
            "--etcd-json", json.dumps(etcd_block(cluster)),
            "--nova-url", url,
        ]  # fmt: skip
        for name, value in options.items():
            argv += [f"--{name}", value]
        params = {"command": "exec " + shlex.join(argv)}
        return await self._service.execute(replace(request, params=params))


def _options(params: Mapping[str, str]) -> dict[str, str] | str:
    """The evacuator's optional arguments, checked here so that a bad value is a
    configuration error of the resource (one line, no restart loop), not a process that
    exits at every start; or what is wrong."""
    options: dict[str, str] = {name: params[name] for name in ("token", "tag") if name in params}
    if "parallel" in params:
        text = params["parallel"].strip()
        if not text.isdigit() or int(text) < 1:
            return f"parameter 'parallel' is a positive count of evacuations, got {text!r}"
        options["parallel"] = text
    if "timeout" in params:
        try:
            timeout = parse_duration(params["timeout"])
        except ValueError as exc:
            return f"parameter 'timeout': {exc}"
        if timeout <= 0:
            return "parameter 'timeout' must be positive"
        options["timeout"] = f"{timeout:g}"
    return options
