"""The lab's compute service (its `nova-compute`): runs on a compute host as a cluster resource
(a `hastack:service` clone), reports to the fake Nova API every 0.5 s and keeps the host's
instances running: it starts, as detached processes of the host, the instances the API places
here, and stops those placed elsewhere. Each instance's pid (with its start time) is kept in
the state directory, so a restarted service adopts what runs instead of starting it twice.

    python -m hastack.lab.nova.compute --api URL --host HOST --state DIR --instances DIR
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from hastack.processes import ProcessRecord, is_alive, send, spawn

__all__ = ["main"]

REPORT_EVERY = 0.5


def _post(url: str, body: dict[str, object], timeout: float = 2.0) -> dict[str, object]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        data = json.loads(answer.read())
    return data if isinstance(data, dict) else {}


def _running(state: Path) -> dict[str, ProcessRecord]:
    out = {}
    for pidfile in state.glob("*.json"):
        try:
            record = ProcessRecord.from_json(json.loads(pidfile.read_text()))
        except (ValueError, KeyError, TypeError):
            pidfile.unlink(missing_ok=True)
            continue
        if is_alive(record):
            out[pidfile.stem] = record
        else:
            pidfile.unlink(missing_ok=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The lab's compute service.")
    parser.add_argument("--api", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--state", required=True, type=Path)
    parser.add_argument("--instances", required=True, type=Path)
    parser.add_argument("--lifetime", type=float, default=3600.0)
    args = parser.parse_args(argv)
    state: Path = args.state
    state.mkdir(parents=True, exist_ok=True)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # instances it stops are reaped at once
    deadline = time.monotonic() + args.lifetime
    said = ""
    while not stopping and time.monotonic() < deadline:
        running = _running(state)
        try:
            answer = _post(
                args.api.rstrip("/") + "/lab/report",
                {"host": args.host, "running": sorted(running)},
            )
        except (OSError, urllib.error.URLError, ValueError) as exc:
            line = f"cannot reach the API: {exc}"
            if line != said:
                print(line, file=sys.stderr, flush=True)
                said = line
            time.sleep(REPORT_EVERY)
            continue
        said = ""
        placed = answer.get("instances", [])
        wanted = {
            str(i["id"]): str(i["name"])
            for i in (placed if isinstance(placed, list) else [])
            if isinstance(i, dict)
        }
        for server_id in sorted(set(wanted) - set(running)):
            record, _ = spawn(
                [
                    sys.executable, "-m", "hastack.lab.nova.instance",
                    server_id, args.host, str(args.instances),
                ],
                log_path=state / f"{server_id}.log",
            )  # fmt: skip
            (state / f"{server_id}.json").write_text(json.dumps(record.to_json()))
            print(f"started {wanted[server_id]} ({server_id})", file=sys.stderr, flush=True)
        for server_id in sorted(set(running) - set(wanted)):
            send(running[server_id], signal.SIGTERM)
            (state / f"{server_id}.json").unlink(missing_ok=True)
            print(f"stopped {server_id}: placed elsewhere", file=sys.stderr, flush=True)
        time.sleep(REPORT_EVERY)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
