"""Fencing a node: try each level in order; a level succeeds when every device in it does.

Only the DC fences. Every attempt ends in a record for the fencing history, success or not;
the DC counts a node fenced only on a confirmed success.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from hastack.fencing.protocol import WarmAgents, find_agent, run_agent
from hastack.model.config import FenceDevice, FencingSpec
from hastack.model.fencing import FenceRecord

__all__ = ["FenceOutcome", "Step", "fence_node"]

# A fencing step hastack runs itself (not a program): (device, node, action) -> (ok, line).
Step = Callable[[FenceDevice, str, str], Awaitable[tuple[bool, str]]]


@dataclass(frozen=True, slots=True)
class FenceOutcome:
    record: FenceRecord
    attempts: tuple[str, ...]  # one line per device tried, for logs and history


async def _device(
    device: FenceDevice,
    node: str,
    action: str,
    dirs: Sequence[str],
    steps: Mapping[str, Step],
    warm: WarmAgents | None,
) -> tuple[bool, str]:
    step = steps.get(device.agent)
    if step is not None:
        return await step(device, node, action)
    if device.is_evacuate_step:
        return False, f"{device.device}: no evacuation step can run here"
    path = find_agent(device.agent, dirs)
    if path is None:
        return False, f"{device.device}: fence agent {device.agent} is not installed"
    args = dict(device.params)
    args.update({"action": action, "plug": device.port(node), "nodename": node})
    run = await run_agent(path, args, device.timeout, warm=warm)
    if run.rc == 0:
        return True, f"{device.device}: {action} succeeded ({run.duration:.2f}s)"
    return False, f"{device.device}: {action} failed: {run.reason}"


async def fence_node(
    spec: FencingSpec,
    node: str,
    *,
    action: str,
    by: str,
    epoch: int,
    agent_dirs: Sequence[str] = (),
    steps: Mapping[str, Step] | None = None,
    warm: WarmAgents | None = None,
) -> FenceOutcome:
    """Try each level in order; within a level run its devices in order, stopping at the
    first failure (so a step placed after a power device runs only once the node is off)."""
    started = time.time()
    attempts: list[str] = []
    levels = spec.levels_for(node)
    if not levels:
        attempts.append(f"no fencing device can fence {node}")
    for index, level in enumerate(levels, start=1):
        ok = True
        for device in level:
            success, line = await _device(device, node, action, agent_dirs, steps or {}, warm)
            attempts.append(f"level {index}: {line}")
            if not success:
                ok = False
                break
        if ok:
            record = FenceRecord(
                node=node,
                action=action,
                result="success",
                level=index,
                devices=tuple(d.device for d in level),
                reason="; ".join(attempts),
                started=started,
                finished=time.time(),
                by=by,
                epoch=epoch,
            )
            return FenceOutcome(record, tuple(attempts))
    record = FenceRecord(
        node=node,
        action=action,
        result="failed",
        level=0,
        devices=(),
        reason="; ".join(attempts) or "no level succeeded",
        started=started,
        finished=time.time(),
        by=by,
        epoch=epoch,
    )
    return FenceOutcome(record, tuple(attempts))
