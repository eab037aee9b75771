"""Checking fence devices before a configuration is stored: the agent must exist here and
get every parameter its metadata marks required. (I/O: it looks on disk and runs the agent
with `-o metadata`, so it lives outside the pure model.)"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from hastack.fencing.protocol import SUPPLIED, find_agent, read_metadata
from hastack.model.config import ClusterConfig
from hastack.model.document import Loc

__all__ = ["fencing_problems"]


def fencing_problems(
    config: ClusterConfig, agent_dirs: Sequence[str] = ()
) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    for index, device in enumerate(config.fencing.devices):
        where: Loc = ("fencing", "devices", index)
        if device.is_evacuate_step:
            continue  # run by the fencer itself: nothing to find on disk
        path = find_agent(device.agent, agent_dirs)
        if path is None:
            problems.append(
                (
                    (*where, "agent"),
                    f"fence agent {device.agent} is not installed (install fence-agents?)",
                )
            )
            continue
        try:
            required = read_metadata(path)
        except (ValueError, OSError, subprocess.TimeoutExpired) as exc:
            problems.append(((*where, "agent"), f"{device.agent} gives no usable metadata: {exc}"))
            continue
        given = SUPPLIED | set(device.params)
        missing = sorted(name for name, accepted in required.items() if not accepted & given)
        if missing:
            problems.append(((*where, "params"), f"{device.agent} requires {', '.join(missing)}"))
    return problems
