"""The fake Nova's part in a scenario run (docs/compute.md): start the API in the client host,
boot the instances on a compute, wait until they write, stop everything by PID at the end,
and judge the run with `hastack.checkers.check_instances`.

    nova:                  # in a scenario
      host: c2             # the compute whose instances are judged
      instances: 6
      evacuable: 4
      within: 10s          # evacuable instances run elsewhere by fence + within
      expect: evacuated    # or `stays`: no fence, no evacuation, instances keep running there
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import pydantic

from hastack.checkers import CheckResult, check_in_place, check_instances, parse_log
from hastack.lab.net.lab import Lab, LabError
from hastack.lab.net.topology import CLIENT, HostRole
from hastack.model.base import Duration, Name, Spec
from hastack.processes import ProcessRecord, is_alive, send, spawn, wait_gone

__all__ = ["NovaRun", "NovaSpec"]

PORT = 8774


class NovaSpec(Spec):
    host: Name
    instances: int = pydantic.Field(default=6, ge=1, le=100)
    evacuable: int = pydantic.Field(default=4, ge=0, le=100)
    within: Duration = 10.0
    down_after: Duration = 10.0
    expect: Literal["evacuated", "stays"] = "evacuated"
    boot_timeout: Duration = 30.0


class NovaRun:
    def __init__(self, spec: NovaSpec, lab: Lab, results: Path) -> None:
        self.spec = spec
        self.lab = lab
        self.results = results
        address = lab.host(CLIENT).addresses[0]
        self.base = f"http://{address}:{PORT}"
        self.url = self.base + "/v2.1"
        self.listen = f"{address}:{PORT}"
        self.instances = lab.directory / "shared" / "instances"
        self.compute_state = lab.directory / "nova-compute"
        self.api: ProcessRecord | None = None

    def names(self) -> dict[str, str]:
        return {
            "nova": self.url,
            "nova_base": self.base,
            "instances": str(self.instances),
            "nova_state": str(self.compute_state),
        }

    def _client(self, argv: list[str], timeout: float = 20.0) -> str:
        """Run a small client in the client host; its output, or a LabError saying why not
        (the last line of its error: a timeout, a refused connection)."""
        ns = self.lab.host(CLIENT).namespace
        try:
            done = subprocess.run(
                ["ip", "netns", "exec", ns, *argv],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise LabError(
                f"the fake Nova API's client got no answer within {timeout:g}s"
            ) from None
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines()
            raise LabError(f"the fake Nova API's client: {lines[-1] if lines else done.returncode}")
        return done.stdout

    def start(self, lifetime: float) -> None:
        self.stop_instances()
        shutil.rmtree(self.instances, ignore_errors=True)
        self.instances.mkdir(parents=True)
        ns = self.lab.host(CLIENT).namespace
        argv = [
            "ip", "netns", "exec", ns, sys.executable, "-m", "hastack.lab.nova.api",
            "--listen", self.listen, "--dir", str(self.results / "nova"),
            "--down-after", str(self.spec.down_after), "--lifetime", str(lifetime),
        ]  # fmt: skip
        self.api, _ = spawn(argv, log_path=self.results / "nova-api.log")
        deadline = time.monotonic() + 10.0
        while True:
            try:
                self._client([sys.executable, "-c", _GET.format(url=self.url + "/")], 3.0)
                return
            except LabError as e:
                if time.monotonic() > deadline:
                    raise LabError(f"the fake Nova API did not answer within 10 s ({e})") from None
                time.sleep(0.2)

    def boot(self) -> None:
        """Once every compute's service reports to Nova, create the instances on the judged
        host; wait until each one writes. Created on a host whose service has not reported
        yet, they would be taken by its first report for instances that died with it (shut
        off), as Nova would never have placed them there."""
        spec = self.spec
        computes = {h.name for h in self.lab.hosts() if h.role is HostRole.COMPUTE}
        deadline = time.monotonic() + spec.boot_timeout
        up: set[str] = set()
        while True:
            # One poll that gets no answer (the API starved of CPU on a loaded machine) is
            # "not known up yet", not the end of the run: only the deadline ends it.
            failed = ""
            try:
                up = set(
                    self._client([sys.executable, "-c", _UP.format(url=self.url)], 5.0).split()
                )
            except LabError as e:
                failed = f"; last poll: {e}"
            if computes <= up:
                break
            if time.monotonic() > deadline:
                raise LabError(
                    f"compute services not up in Nova within {spec.boot_timeout:g}s: "
                    + " ".join(sorted(computes - up))
                    + failed
                )
            time.sleep(0.2)
        body = [
            {"name": f"vm{i}", "host": spec.host, "evacuable": i < spec.evacuable}
            for i in range(spec.instances)
        ]
        self._client([sys.executable, "-c", _CREATE.format(url=self.base, body=json.dumps(body))])
        deadline = time.monotonic() + spec.boot_timeout
        while time.monotonic() < deadline:
            logs = list(self.instances.glob("*.log"))
            if len(logs) >= spec.instances and all(p.stat().st_size > 60 for p in logs):
                return
            time.sleep(0.2)
        raise LabError(
            f"only {len(list(self.instances.glob('*.log')))} of {spec.instances} instances "
            f"started within {spec.boot_timeout:g}s"
        )

    def stop_instances(self) -> None:
        """Every instance process any compute service recorded, by PID and start time."""
        for pidfile in sorted(self.compute_state.glob("*/*.json")):
            try:
                record = ProcessRecord.from_json(json.loads(pidfile.read_text()))
            except (ValueError, KeyError, TypeError, OSError):
                continue
            if is_alive(record):
                send(record, signal.SIGKILL)
                wait_gone(record)

    def stop(self) -> None:
        if self.api is not None and is_alive(self.api):
            send(self.api, signal.SIGTERM)
            if not wait_gone(self.api, 3.0):
                send(self.api, signal.SIGKILL)
                wait_gone(self.api)
        self.stop_instances()
        if self.instances.exists():
            shutil.copytree(self.instances, self.results / "instances", dirs_exist_ok=True)

    def check(self, nemesis: list[Mapping[str, Any]], agents: Path) -> list[CheckResult]:
        spec = self.spec
        state_file = self.results / "nova" / "state.json"
        state = json.loads(state_file.read_text()) if state_file.exists() else {"servers": {}}
        names = {sid: s["name"] for sid, s in state["servers"].items()}
        logs = {
            names.get(p.stem, p.stem): parse_log(p.read_text().splitlines())
            for p in sorted((self.results / "instances").glob("*.log"))
        }
        events_file = self.results / "nova" / "events.jsonl"
        events = [json.loads(x) for x in events_file.read_text().splitlines()] if (
            events_file.exists()
        ) else []  # fmt: skip
        fault_at = min((float(e["time"]) for e in nemesis), default=time.time())
        dead = [
            json.loads(x) for x in _lines(agents / spec.host / "exclusive.jsonl") if '"dead"' in x
        ]
        fenced = [float(d["wall"]) for d in dead if float(d["wall"]) >= fault_at - 1.0]
        evacuable = {f"vm{i}" for i in range(spec.evacuable)}
        if spec.expect == "stays":
            kills = [
                e for e in nemesis if e.get("f") == "kill" and e.get("host") == spec.host
            ]  # fmt: skip
            operations = [
                json.loads(x) for x in _lines(agents / spec.host / "events.jsonl")
                if '"operation"' in x
            ]  # fmt: skip
            return [
                check_in_place(
                    logs,
                    host=spec.host,
                    service=str(kills[0].get("process", "")) if kills else "",
                    killed=kills,
                    restarts=[e for e in operations if e.get("event") == "operation"],
                    fenced=fenced,
                    nova_events=events,
                )
            ]
        boots = [
            e for e in events if e["event"] == "report-up" and e["host"] == spec.host
            and e["t"] > fault_at
        ]  # fmt: skip
        result = check_instances(
            logs,
            host=spec.host,
            fault_at=fault_at,
            fenced_at=fenced[0] if fenced else None,
            evacuable=evacuable,
            within=spec.within,
            nova_events=events,
        )
        booted = CheckResult(
            "boots-disabled",
            (boots[0].get("status") == "disabled") if boots else None,
            f"{spec.host} reported again with its service {boots[0].get('status')}"
            if boots
            else f"{spec.host} did not report again",
        )
        return [result, booted]


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


_GET = "import urllib.request; urllib.request.urlopen({url!r}, timeout=2).read()"
_UP = (
    "import json, urllib.request\n"
    "r = urllib.request.urlopen({url!r} + '/os-services', timeout=2)\n"
    "print(' '.join(s['host'] for s in json.loads(r.read())['services'] if s['state'] == 'up'))\n"
)
_CREATE = (
    "import json, urllib.request\n"
    "for s in json.loads({body!r}):\n"
    "    r = urllib.request.Request({url!r} + '/lab/servers', data=json.dumps(s).encode(),"
    " headers={{'Content-Type': 'application/json'}})\n"
    "    urllib.request.urlopen(r, timeout=5).read()\n"
)
