"""A Python agent instance for the work-assignment tests: follows its assignment file with
hastack.executor.assignfile.watch and logs every generation it applied (one JSON line each).
With `--never-ack` it reads the file but never confirms (the negative case)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from hastack.executor.assignfile import Assigned, watch


async def main() -> None:
    name, log = sys.argv[1], Path(sys.argv[2])
    directory = Path(os.environ["HASTACK_ASSIGN_DIR"])
    if "--never-ack" in sys.argv:
        await asyncio.sleep(3600)

    async def apply(assigned: Assigned) -> None:
        with log.open("a") as f:  # noqa: ASYNC230 - a local append, microseconds
            line = {"generation": assigned.generation, "active": list(assigned.active),
                    "standby": list(assigned.standby)}  # fmt: skip
            f.write(json.dumps(line) + "\n")

    await watch(directory, name, apply)


if __name__ == "__main__":
    asyncio.run(main())
