"""The lab's fake Nova API: the few endpoints the evacuator and the lab's compute service use,
with Nova's request and answer shapes (microversion 2.53), state in one JSON file and every
change in an event log. Lab only: the product talks to a real Nova.

    python -m hastack.lab.nova.api --listen ADDR:PORT --dir DIR [--down-after 10]

    GET  /  and  /v2.1                       version documents
    GET  /v2.1/os-services?host=&binary=     compute services
    PUT  /v2.1/os-services/{id}              {"forced_down": b} | {"status": "enabled"|"disabled"}
    GET  /v2.1/servers/detail?host=          servers (OS-EXT-SRV-ATTR:host, metadata)
    POST /v2.1/servers/{id}/action           {"evacuate": {...}}: refused (400) unless the
                                             source is forced down or silent for down-after;
                                             the target is the enabled, up compute with the
                                             fewest instances (then by name)
    POST /lab/report                         a compute service: {"host", "running": [ids]} ->
                                             the instances placed on it
    POST /lab/servers                        create: {"name", "host", "evacuable"}
    GET  /lab/state                          everything, for checkers

The event log (`DIR/events.jsonl`) has one line per change with its wall time: force-down,
disable, enable, evacuate (from, to), active (an evacuated instance reported running on its
new host), report-up (a host's first report after silence).
"""

from __future__ import annotations

import argparse
import datetime
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

__all__ = ["FakeNova", "main"]


class FakeNova:
    def __init__(self, directory: Path, down_after: float) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.down_after = down_after
        self.lock = threading.Lock()
        state_file = self.dir / "state.json"
        if state_file.exists():
            self.state: dict[str, Any] = json.loads(state_file.read_text())
        else:
            self.state = {"services": {}, "servers": {}}

    # ---- bookkeeping --------------------------------------------------------------------

    def _save(self) -> None:
        tmp = self.dir / "state.json.tmp"
        tmp.write_text(json.dumps(self.state, sort_keys=True))
        tmp.replace(self.dir / "state.json")

    def _event(self, event: str, **fields: Any) -> None:
        line = json.dumps({"t": round(time.time(), 3), "event": event, **fields})
        with (self.dir / "events.jsonl").open("a") as f:
            f.write(line + "\n")

    def _service_of(self, host: str) -> dict[str, Any]:
        for svc in self.state["services"].values():
            if svc["host"] == host:
                return dict(svc)
        sid = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"nova-compute.{host}"))
        svc = {"id": sid, "host": host, "status": "enabled", "forced_down": False, "seen": 0.0}
        self.state["services"][sid] = svc
        return dict(svc)

    def _is_up(self, svc: dict[str, Any], now: float) -> bool:
        return not svc["forced_down"] and now - svc["seen"] < self.down_after

    def _service_view(self, svc: dict[str, Any], now: float) -> dict[str, Any]:
        return {
            "id": svc["id"],
            "binary": "nova-compute",
            "host": svc["host"],
            "zone": "nova",
            "status": svc["status"],
            "state": "up" if self._is_up(svc, now) else "down",
            "forced_down": svc["forced_down"],
            "disabled_reason": svc.get("disabled_reason"),
            # Nova's form: UTC, no zone, microseconds.
            "updated_at": datetime.datetime.fromtimestamp(svc["seen"], datetime.UTC).strftime(
                "%Y-%m-%dT%H:%M:%S.%f"
            ),
        }

    def _server_view(self, s: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": s["id"],
            "name": s["name"],
            "status": s["status"],
            "metadata": {"evacuable": "true"} if s["evacuable"] else {},
            "OS-EXT-SRV-ATTR:host": s["host"],
            "flavor": {"original_name": "lab", "extra_specs": {}},
            "links": [],
        }

    # ---- the API ------------------------------------------------------------------------

    def services(self, query: dict[str, str]) -> dict[str, Any]:
        now = time.time()
        with self.lock:
            found = [
                self._service_view(svc, now)
                for svc in self.state["services"].values()
                if query.get("host") in (None, svc["host"])
                and query.get("binary") in (None, "nova-compute")
            ]
        return {"services": found}

    def update_service(self, sid: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            svc = self.state["services"].get(sid)
            if svc is None:
                return 404, {"itemNotFound": {"code": 404, "message": f"service {sid} not found"}}
            if "forced_down" in body:
                svc["forced_down"] = bool(body["forced_down"])
                self._event(
                    "force-down" if svc["forced_down"] else "unforce-down", host=svc["host"]
                )
            if "status" in body:
                svc["status"] = str(body["status"])
                svc["disabled_reason"] = body.get("disabled_reason")
                self._event(
                    "disable" if svc["status"] == "disabled" else "enable", host=svc["host"]
                )
            self._save()
            return 200, {"service": self._service_view(svc, time.time())}

    def servers(self, query: dict[str, str]) -> dict[str, Any]:
        with self.lock:
            found = [
                self._server_view(s)
                for s in sorted(self.state["servers"].values(), key=lambda s: s["name"])
                if query.get("host") in (None, s["host"])
            ]
        return {"servers": found}

    def evacuate(self, server_id: str) -> tuple[int, dict[str, Any]]:
        now = time.time()
        with self.lock:
            s = self.state["servers"].get(server_id)
            if s is None:
                return 404, {"itemNotFound": {"code": 404, "message": "server not found"}}
            source = self._service_of(s["host"])
            if self._is_up(source, now):
                return 400, {
                    "badRequest": {
                        "code": 400,
                        "message": f"Compute service of {s['host']} is still in use.",
                    }
                }
            counts = {svc["host"]: 0 for svc in self.state["services"].values()}
            for other in self.state["servers"].values():
                counts[other["host"]] = counts.get(other["host"], 0) + 1
            targets = sorted(
                (counts.get(svc["host"], 0), svc["host"])
                for svc in self.state["services"].values()
                if svc["host"] != s["host"] and svc["status"] == "enabled" and self._is_up(svc, now)
            )
            if not targets:
                return 400, {"badRequest": {"code": 400, "message": "No valid host was found."}}
            target = targets[0][1]
            self._event("evacuate", server=server_id, name=s["name"], source=s["host"], to=target)
            s["host"], s["status"] = target, "REBUILD"
            self._save()
        return 200, {}

    def report(self, body: dict[str, Any]) -> dict[str, Any]:
        host = str(body["host"])
        running = set(body.get("running", []))
        now = time.time()
        with self.lock:
            svc = self.state["services"][self._service_of(host)["id"]]
            if now - svc["seen"] >= self.down_after:
                self._event("report-up", host=host, status=svc["status"])
                # The host was down: what it ran died with it, and Nova finds those instances
                # shut off (they are not started again by themselves).
                for s in self.state["servers"].values():
                    if s["host"] == host and s["status"] == "ACTIVE" and s["id"] not in running:
                        s["status"] = "SHUTOFF"
                        self._event("shutoff", server=s["id"], name=s["name"], host=host)
            svc["seen"] = now
            mine = []
            for s in self.state["servers"].values():
                if s["host"] != host or s["status"] not in ("ACTIVE", "REBUILD"):
                    continue
                mine.append({"id": s["id"], "name": s["name"]})
                if s["status"] == "REBUILD" and s["id"] in running:
                    s["status"] = "ACTIVE"
                    self._event("active", server=s["id"], name=s["name"], host=host)
            self._save()
        return {"instances": mine, "status": svc["status"]}

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            sid = str(uuid.uuid4())
            s: dict[str, Any] = {
                "id": sid,
                "name": str(body["name"]),
                "host": str(body["host"]),
                "evacuable": bool(body.get("evacuable", False)),
                "status": "ACTIVE",
            }
            self.state["servers"][sid] = s
            self._service_of(s["host"])
            self._event("create", server=sid, name=s["name"], host=s["host"])
            self._save()
        return {"server": self._server_view(s)}


_VERSION = {
    "id": "v2.1",
    "status": "CURRENT",
    "version": "2.90",
    "min_version": "2.1",
    "updated": "2013-07-23T11:33:21Z",
    "links": [],
}


def _handler(nova: FakeNova) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return  # quiet: the event log says what changed

        def _send(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("OpenStack-API-Version", "compute 2.53")
            self.send_header("X-OpenStack-Nova-API-Version", "2.53")
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b"{}"
            data = json.loads(raw or b"{}")
            return data if isinstance(data, dict) else {}

        def _route(self, method: str) -> None:
            url = urlparse(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            parts = [p for p in url.path.split("/") if p]
            if parts and parts[0] == "v2.1":
                parts = parts[1:]
            try:
                if method == "GET" and not parts:
                    self._send(200, {"version": _VERSION, "versions": [_VERSION]})
                elif method == "GET" and parts == ["os-services"]:
                    self._send(200, nova.services(query))
                elif method == "PUT" and len(parts) == 2 and parts[0] == "os-services":
                    self._send(*nova.update_service(parts[1], self._body()))
                elif method == "GET" and parts in (["servers", "detail"], ["servers"]):
                    self._send(200, nova.servers(query))
                elif method == "POST" and len(parts) == 3 and parts[0] == "servers":
                    body = self._body()
                    if "evacuate" not in body:
                        self._send(400, {"badRequest": {"code": 400, "message": "only evacuate"}})
                    else:
                        self._send(*nova.evacuate(parts[1]))
                elif method == "POST" and parts == ["lab", "report"]:
                    self._send(200, nova.report(self._body()))
                elif method == "POST" and parts == ["lab", "servers"]:
                    self._send(200, nova.create(self._body()))
                elif method == "GET" and parts == ["lab", "state"]:
                    with nova.lock:
                        self._send(200, nova.state)
                else:
                    self._send(404, {"itemNotFound": {"code": 404, "message": url.path}})
            except (KeyError, ValueError, TypeError) as exc:
                self._send(400, {"badRequest": {"code": 400, "message": str(exc)}})

        def do_GET(self) -> None:
            self._route("GET")

        def do_PUT(self) -> None:
            self._route("PUT")

        def do_POST(self) -> None:
            self._route("POST")

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The lab's fake Nova API.")
    parser.add_argument("--listen", required=True, help="ADDR:PORT")
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--down-after", type=float, default=10.0, help="service_down_time")
    parser.add_argument("--lifetime", type=float, default=3600.0, help="ends by itself after")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    nova = FakeNova(args.dir, args.down_after)
    server = ThreadingHTTPServer((host, int(port)), _handler(nova))
    server.daemon_threads = True
    threading.Timer(args.lifetime, server.shutdown).start()
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
