"""A Heat-style engine for the lab (docs/assign.md, acceptance H2): engines on every node
take jobs from a queue in etcd, lock each one (a tooz lock on the lab's etcd, its lease
kept alive by tooz's heartbeat), work on it, and mark it DONE. Every `--check` seconds each
engine looks at the jobs other engines have IN_PROGRESS: a job whose lock it can take has
lost its owner (the owner's lease expired) — it takes the job over, resuming it when the job
says it can be resumed, and otherwise marking it FAILED with the reason, as Heat's
`reset_stack_status` marks a dead engine's stacks ("Engine went down during <action>").

    python -m hastack.lab.net.engine --prefix /lab-heat/RUN [--lock-ttl 5] [--check 1]

A job is one key, `<prefix>/jobs/<id>`, JSON written only by the holder of its lock:

    {"id": "j007", "action": "CREATE", "seconds": 3, "resumable": true, "state": "DONE",
     "engine": "n3", "history": [["PENDING", null, t], ["IN_PROGRESS", "n2", t], ...],
     "taken_over_from": "n2", "reason": "..."}
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from typing import Any

from hastack.lab.net.etcdenv import local_etcd

_POLL = 0.2


class Engine:
    def __init__(self, args: argparse.Namespace) -> None:
        from tooz import coordination  # noqa: PLC0415 - the lab extra

        self.node = os.environ.get("HASTACK_NODE", "?")
        self.prefix = args.prefix.rstrip("/")
        self.check = args.check
        etcd = local_etcd()
        self.kv = etcd.gateway(timeout=5)
        url = etcd.tooz_url(timeout=5, lock_timeout=int(args.lock_ttl))
        self.coordinator = coordination.get_coordinator(url, self.node.encode())
        self.coordinator.start(start_heart=True)
        self.stop = threading.Event()

    def say(self, what: str, **fields: Any) -> None:
        line = {"engine": self.node, "event": what, "time": time.time(), **fields}
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()

    def jobs(self) -> list[dict[str, Any]]:
        out = []
        for value, _meta in self.kv.get_prefix(f"{self.prefix}/jobs/"):
            try:
                out.append(json.loads(value))
            except ValueError:
                continue
        return sorted(out, key=lambda j: str(j.get("id")))

    def write(self, job: dict[str, Any], state: str, **fields: Any) -> None:
        job.update(fields, state=state, engine=self.node)
        job.setdefault("history", []).append([state, self.node, time.time()])
        self.kv.put(f"{self.prefix}/jobs/{job['id']}", json.dumps(job))

    def lock(self, job: dict[str, Any]) -> Any:
        return self.coordinator.get_lock(f"{self.prefix}/locks/{job['id']}".encode())

    def work(self, job: dict[str, Any], seconds: float) -> bool:
        """Work on it for `seconds` (a stop ends it early: not finished)."""
        return not self.stop.wait(seconds)

    def run_job(self, job: dict[str, Any], lock: Any, *, took_over: str | None = None) -> None:
        try:
            fields: dict[str, Any] = {}
            if took_over is not None:
                fields = {"taken_over_from": took_over, "taken_over_at": time.time()}
            self.write(job, "IN_PROGRESS", **fields)
            self.say("working", job=job["id"], took_over=took_over)
            if self.work(job, float(job.get("seconds", 3))):
                self.write(job, "DONE")
                self.say("done", job=job["id"])
        finally:
            lock.release()

    def fail_job(self, job: dict[str, Any], lock: Any, owner: str) -> None:
        try:
            reason = f"Engine {owner} went down during {job.get('action', 'work')}"
            self.write(
                job, "FAILED", reason=reason, taken_over_from=owner, taken_over_at=time.time()
            )
            self.say("failed", job=job["id"], reason=reason)
        finally:
            lock.release()

    def loop(self) -> None:
        """Survives the store's bad moments (an etcd leader election answers 503 for a
        second): a failed round is logged and tried again."""
        while not self.stop.is_set():
            try:
                self.round()
            except Exception as exc:  # etcd3gw and tooz raise their own trees
                self.say("store-error", error=repr(exc)[:200])
                self.stop.wait(1.0)

    _last_check = 0.0

    def round(self) -> None:
        while not self.stop.is_set():
            jobs = self.jobs()
            for job in jobs:
                if job.get("state") != "PENDING":
                    continue
                lock = self.lock(job)
                if lock.acquire(blocking=False):
                    current = next((j for j in self.jobs() if j["id"] == job["id"]), job)
                    if current.get("state") == "PENDING":
                        self.run_job(current, lock)
                        break  # one job at a time; look at the queue again
                    lock.release()
            if time.monotonic() - self._last_check >= self.check:
                self._last_check = time.monotonic()
                self.take_over(jobs)
            self.stop.wait(_POLL)

    def take_over(self, jobs: list[dict[str, Any]]) -> None:
        """Jobs in progress elsewhere whose lock is free: their owner is gone."""
        for job in jobs:
            owner = str(job.get("engine"))
            if job.get("state") != "IN_PROGRESS" or owner == self.node:
                continue
            lock = self.lock(job)
            if not lock.acquire(blocking=False):
                continue  # its owner still holds it
            current = next((j for j in self.jobs() if j["id"] == job["id"]), None)
            if current is None or current.get("state") != "IN_PROGRESS":
                lock.release()
                continue
            self.say("taking-over", job=job["id"], owner=owner)
            if current.get("resumable"):
                self.run_job(current, lock, took_over=owner)
            else:
                self.fail_job(current, lock, owner)

    def close(self) -> None:
        self.coordinator.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--lock-ttl", type=float, default=5.0)
    parser.add_argument("--check", type=float, default=1.0)
    args = parser.parse_args()
    engine = Engine(args)
    signal.signal(signal.SIGTERM, lambda *_: engine.stop.set())
    engine.say("started")
    try:
        engine.loop()
    finally:
        engine.close()


if __name__ == "__main__":
    main()
