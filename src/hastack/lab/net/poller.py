"""A Ceilometer-style polling agent for the lab (docs/assign.md, acceptance H1): every
`--interval` seconds (on the wall clock's multiples, so every poller's interval is the same
window) it polls the resources it owns and writes one JSON line per poll to stdout:

    {"poll": "res042", "node": "n2", "mode": "tooz", "time": 1700000005.01}

Who owns what, two ways, side by side in one lab run:

* `--mode tooz`: tooz (from PyPI, its etcd3gw driver against the lab's etcd) — the pollers
  join a partitioned group and keep the resources `Partitioner.belongs_to_self` gives them,
  as ceilometer.polling.manager does; a dead member leaves the ring when its membership key
  expires (`--membership-timeout`), and the survivors see it at their next refresh.
* `--mode hastack`: the entities hastack's work assignment grants this instance, from the
  assignment file (hastack.executor.assignfile.follow), confirmed as soon as they are taken.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from hastack.executor.assignfile import Assigned, follow
from hastack.lab.net.etcdenv import local_etcd


def _emit(node: str, mode: str) -> Callable[[str], None]:
    def emit(resource: str) -> None:
        line = {"poll": resource, "node": node, "mode": mode, "time": time.time()}
        sys.stdout.write(json.dumps(line) + "\n")

    return emit


def _sleep_to_next(interval: float, stop: threading.Event) -> None:
    now = time.time()
    stop.wait(interval - (now % interval) + 0.01)


def run_tooz(args: argparse.Namespace, resources: list[str], stop: threading.Event) -> None:
    from tooz import coordination  # noqa: PLC0415 - the lab extra, only in this mode

    node = os.environ.get("HASTACK_NODE", "?")
    url = local_etcd().tooz_url(timeout=5, membership_timeout=int(args.membership_timeout))
    coordinator = coordination.get_coordinator(url, node.encode())
    coordinator.start(start_heart=True)
    partitioner = coordinator.join_partitioned_group(args.group.encode())
    emit = _emit(node, "tooz")
    try:
        while not stop.is_set():
            _sleep_to_next(args.interval, stop)
            try:
                coordinator.run_watchers()  # membership changes: the ring is rebuilt
            except Exception as exc:  # a store hiccup: poll with the ring we have
                sys.stderr.write(f"run_watchers failed: {exc!r}\n")
            for r in resources:
                if partitioner.belongs_to_self(r):
                    emit(r)
            sys.stdout.flush()
    finally:
        coordinator.leave_partitioned_group(partitioner)
        coordinator.stop()


def run_hastack(args: argparse.Namespace, stop: threading.Event) -> None:
    node = os.environ.get("HASTACK_NODE", "?")
    directory = Path(os.environ["HASTACK_ASSIGN_DIR"])
    owned: list[str] = []
    lock = threading.Lock()

    def apply(assigned: Assigned) -> None:
        with lock:
            owned[:] = sorted(assigned.active)

    follower = threading.Thread(
        target=follow, args=(directory, args.assignment, apply, stop), daemon=True
    )
    follower.start()
    emit = _emit(node, "hastack")
    while not stop.is_set():
        _sleep_to_next(args.interval, stop)
        with lock:
            now = list(owned)
        for r in now:
            emit(r)
        sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("tooz", "hastack"), required=True)
    parser.add_argument("--resources", type=int, default=100)
    parser.add_argument("--prefix", default="res")
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--membership-timeout", type=float, default=10.0)
    parser.add_argument("--group", default="hastack-pollers")
    parser.add_argument("--assignment", default="polled")
    args = parser.parse_args()
    stop = threading.Event()
    import signal  # noqa: PLC0415

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    resources = [f"{args.prefix}{i:03d}" for i in range(args.resources)]
    if args.mode == "tooz":
        run_tooz(args, resources, stop)
    else:
        run_hastack(args, stop)


if __name__ == "__main__":
    main()
