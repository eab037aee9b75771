"""The benchmarks' eyes inside the lab's client host: etcd's own counters, and how many
instances of some resources run, answered one JSON object per line on stdin/stdout. The
root namespace cannot reach the lab (it is blackholed there), so `bench/scale.py` starts
this in the client namespace:

    ip netns exec NS python bench/etcd_probe.py --config LAB/client.yaml

(the lab's client configuration: its cluster, endpoints and the operator's certificates).

Requests:

    {"op": "metrics"}        every member's counters (GET /metrics, Prometheus text): gRPC
                             messages received and sent by method, client bytes in and
                             out, peer (raft) bytes, the store revision; plus `own`, the
                             probe's own gRPC requests and bytes so far
    {"op": "wait", "names": [...], "count": N, "gone": [...], "timeout": S}
                             poll (every `interval`, 0.5 s) until N instances of `names`
                             run, not failed, on online nodes, and nothing of `gone` runs
                             anywhere; answers {"ok", "seconds", "running", "failed", ...}

The probe's reads are plain gRPC Range calls on one member. etcd counts client bytes as the
sizes of the protobuf messages (`etcd_network_client_grpc_*_bytes_total`), so the probe
adds the same sizes of its own requests and answers to `own`: the benchmark subtracts them
and reports the cluster's traffic alone. Scraping /metrics is HTTP, not gRPC: not counted.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import time
import urllib.request
from collections import defaultdict
from typing import Any

import grpc
from aetcd import rpc

from hastack.model.agent_config import EtcdSpec, parse_client_config, parse_endpoint
from hastack.model.status import decode_status_keys
from hastack.store import Keys
from hastack.store.etcd import prefix_end
from hastack.store.tls import load_credentials

ACTIVE = ("Started", "Promoted", "Unpromoted")
BY_METHOD = ("grpc_server_msg_received_total", "grpc_server_msg_sent_total")
TOTALS = (
    "etcd_network_client_grpc_received_bytes_total",
    "etcd_network_client_grpc_sent_bytes_total",
    "etcd_network_peer_sent_bytes_total",
    "etcd_debugging_mvcc_events_total",
    "etcd_server_proposals_committed_total",
    "etcd_server_slow_apply_total",
    "etcd_server_slow_read_indexes_total",
    "etcd_server_heartbeat_send_failures_total",
    "etcd_server_leader_changes_seen_total",
    # The disk: fdatasync of the WAL and the backend's commits (sum of seconds, count).
    "etcd_disk_wal_fsync_duration_seconds_sum",
    "etcd_disk_wal_fsync_duration_seconds_count",
    "etcd_disk_backend_commit_duration_seconds_sum",
    "etcd_disk_backend_commit_duration_seconds_count",
)
# Histogram buckets kept by their upper bound (seconds): how many fsyncs/commits were slow.
BUCKETS = {
    "etcd_disk_wal_fsync_duration_seconds_bucket": ("0.008", "0.128", "1.024"),
    "etcd_disk_backend_commit_duration_seconds_bucket": ("0.128", "1.024"),
}


class Probe:
    def __init__(self, spec: EtcdSpec, keys: Keys) -> None:
        self.endpoints = spec.endpoints
        self.keys = keys
        self.requests = 0
        self.bytes = 0
        # The lab's etcd wants the operator's client certificate for gRPC and /metrics alike.
        material = load_credentials(spec).material()
        target = parse_endpoint(self.endpoints[0])
        self._https: ssl.SSLContext | None = None
        if material is None:
            self._channel = grpc.insecure_channel(target)
        else:
            creds = grpc.ssl_channel_credentials(
                root_certificates=material.ca,
                private_key=material.key,
                certificate_chain=material.cert,
            )
            self._channel = grpc.secure_channel(target, creds)
            assert spec.tls is not None
            self._https = ssl.create_default_context(cafile=spec.tls.ca)
            self._https.load_cert_chain(spec.tls.cert, spec.tls.key)
        self._kv = rpc.KVStub(self._channel)

    def _range(self, prefix: str, *, keys_only: bool = False) -> Any:
        key = prefix.encode()
        request = rpc.RangeRequest(
            key=key, range_end=prefix_end(key), serializable=True, keys_only=keys_only
        )
        response = self._kv.Range(request, timeout=5.0)
        self.requests += 1
        self.bytes += request.ByteSize() + response.ByteSize()
        return response

    def metrics(self) -> dict[str, Any]:
        members: dict[str, dict[str, Any]] = {}
        revision = 0
        for endpoint in self.endpoints:
            try:
                scheme = "" if "://" in endpoint else "https://" if self._https else "http://"
                url = f"{scheme}{endpoint}/metrics"
                with urllib.request.urlopen(url, timeout=5.0, context=self._https) as answer:
                    text = answer.read().decode()
            except OSError as exc:
                members[endpoint] = {"error": str(exc)}
                continue
            members[endpoint] = parse_metrics(text)
        try:
            revision = int(self._range(self.keys.dc, keys_only=True).header.revision)
        except grpc.RpcError:
            revision = 0
        return {
            "members": members,
            "revision": revision,
            "own": {"requests": self.requests, "bytes": self.bytes},
            "mono": time.monotonic(),
        }

    def running(self, names: set[str], gone: set[str]) -> dict[str, int]:
        online = {
            kv.key.decode().removeprefix(self.keys.members)
            for kv in self._range(self.keys.members, keys_only=True).kvs
        }
        counts = {"running": 0, "failed": 0, "gone-running": 0, "online": len(online)}
        # Each node's report is its head and its parts (model/status.py).
        heads: dict[str, bytes] = {}
        parts: dict[str, dict[str, bytes]] = {}
        for kv in self._range(self.keys.statuses).kvs:
            node, _, part = kv.key.decode().removeprefix(self.keys.statuses).partition("/")
            if part:
                parts.setdefault(node, {})[part] = kv.value
            else:
                heads[node] = kv.value
        for node, head in sorted(heads.items()):
            try:
                report = decode_status_keys(node, head, parts.get(node, {}))
            except ValueError:
                continue
            for instance, r in report.resources.items():
                base = instance.partition(":")[0]
                active = r.role.value in ACTIVE
                if base in gone and active:
                    counts["gone-running"] += 1
                if base not in names:
                    continue
                if r.failed:
                    counts["failed"] += 1
                elif active and node in online:
                    counts["running"] += 1
        return counts

    def wait(
        self, names: set[str], count: int, gone: set[str], timeout: float, interval: float
    ) -> dict[str, Any]:
        started = time.monotonic()
        polls = 0
        counts: dict[str, int] = {}
        while True:
            polls += 1
            try:
                counts = self.running(names, gone)
            except grpc.RpcError as exc:
                counts = {"error": 1}
                print(f"probe: {exc.code()}", file=sys.stderr, flush=True)
            ok = counts.get("running") == count and not counts.get("gone-running", 1)
            elapsed = time.monotonic() - started
            if ok or elapsed >= timeout:
                return {"ok": ok, "seconds": elapsed, "polls": polls, **counts}
            time.sleep(interval)


def parse_metrics(text: str) -> dict[str, Any]:
    """The counters the benchmarks use, summed over labels (and by gRPC method for the
    message counters)."""
    totals: dict[str, float] = defaultdict(float)
    by_method: dict[str, dict[str, float]] = {name: defaultdict(float) for name in BY_METHOD}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, labels = head.partition("{")
        if name in BY_METHOD:
            method = labels.split('grpc_method="', 1)[1].split('"', 1)[0] if labels else ""
            by_method[name][method] += float(value)
            totals[name] += float(value)
        elif name in TOTALS:
            totals[name] += float(value)
        elif name in BUCKETS:
            le = labels.split('le="', 1)[1].split('"', 1)[0] if 'le="' in labels else ""
            if le in BUCKETS[name]:
                totals[f"{name}<={le}"] += float(value)
    return {"totals": dict(totals), "by_method": {k: dict(v) for k, v in by_method.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True, help="the lab's client configuration")
    args = parser.parse_args()
    with open(args.config) as f:
        client = parse_client_config(f.read(), args.config)
    probe = Probe(client.etcd, Keys(client.cluster, client.etcd.root))
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "metrics":
            answer = probe.metrics()
        elif request["op"] == "wait":
            answer = probe.wait(
                set(request["names"]),
                int(request["count"]),
                set(request.get("gone", [])),
                float(request["timeout"]),
                float(request.get("interval", 0.5)),
            )
        else:
            answer = {"error": f"unknown op {request['op']!r}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
