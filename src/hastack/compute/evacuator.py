"""The evacuator: drains the evacuation records against the Nova API (docs/compute.md).

    python -m hastack.compute.evacuator --cluster NAME --etcd URL[,URL] --nova-url URL

It runs as a cluster resource (`hastack:evacuator`, one instance on a controller), so it
moves when its controller dies; it remembers nothing between rounds: each round reads the
records and the members from the store and asks Nova, decides with
`hastack.compute.evacuation`, and writes each record back by CAS on its revision. Every
decision is logged with its reason; while Nova cannot be reached it says which records wait.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import Sequence

from hastack.compute.evacuation import (
    DEFAULT_PARALLEL,
    CallResult,
    EvacuationRecord,
    RecordState,
    Round,
    apply_results,
    plan_round,
)
from hastack.compute.nova import NovaApi, NovaError, NovaUnavailable
from hastack.errors import StoreError
from hastack.model.agent_config import EtcdSpec
from hastack.model.durations import parse_duration
from hastack.store import Compare, DeleteOp, EtcdStore, Keys, PutOp, Store

__all__ = ["Evacuator", "main"]

log = logging.getLogger("hastack.evacuator")

_ROUND_EVERY = 0.5


class Evacuator:
    def __init__(
        self, store: Store, keys: Keys, nova: NovaApi, *, parallel: int = DEFAULT_PARALLEL
    ) -> None:
        self._store = store
        self._keys = keys
        self._nova = nova
        self._parallel = parallel
        self._said: dict[str, str] = {}

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.round()
            except StoreError as exc:
                self._say("*store", f"store unreachable ({exc}); retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _ROUND_EVERY)

    async def round(self) -> None:
        found = await self._store.range(self._keys.evacuations, prefix=True)
        records: list[tuple[EvacuationRecord, int]] = []
        for kv in found.kvs:
            try:
                records.append((EvacuationRecord.decode(kv.value), kv.mod_revision))
            except ValueError as exc:
                self._say(kv.key, f"{kv.key}: {exc}; left alone")
        if not records:
            return
        back = await self._back_since()
        waiting: list[str] = []
        for record, revision in sorted(records, key=lambda r: r[0].fenced_at):
            joined = back.get(record.node)
            host_back = joined is not None and joined > record.fenced_at
            outcome = await self._one(record, revision, host_back)
            if outcome:
                waiting.append(outcome)
        if waiting:
            self._say("*waiting", "Nova unreachable: pending evacuations: " + "; ".join(waiting))
        else:
            self._said.pop("*waiting", None)

    async def _back_since(self) -> dict[str, float]:
        """Members now, with when their current life joined (wall time)."""
        found = await self._store.range(self._keys.members, prefix=True)
        out: dict[str, float] = {}
        for kv in found.kvs:
            try:
                data = json.loads(kv.value)
                out[str(data["name"])] = float(data.get("joined_at", 0.0))
            except (ValueError, KeyError, TypeError):
                continue
        return out

    async def _one(self, record: EvacuationRecord, revision: int, host_back: bool) -> str | None:
        """One round for one record; a line for the pending list when Nova is unreachable."""
        node, now = record.node, time.time()
        reported: str | None = None
        if record.state is RecordState.DONE and host_back and record.disabled_mark:
            try:  # has its compute service reported since it was disabled?
                reported = await asyncio.to_thread(self._nova.service_updated, node)
            except (NovaError, NovaUnavailable) as exc:
                self._say(node, f"{node}: back, its compute service not read yet ({exc})")
                return f"{node} (done, to be enabled: {exc})"
        plan = plan_round(
            record,
            None,
            host_back=host_back,
            now=now,
            parallel=self._parallel,
            service_updated=reported,
        )
        if plan.wait_until:
            return (
                f"{node} ({len(record.pending_instances)} instance(s) pending, {record.last_error})"
            )
        if plan.enable_host:
            return await self._enable(record, revision, plan)
        if not plan.list_servers:
            self._say(node, plan.reason)
            return None
        disabled: bool | None = None
        mark: str | None = None
        try:
            if plan.disable_host:
                mark = await asyncio.to_thread(self._nova.disable_host, node)
                disabled = True
                log.warning("%s: compute service forced down and disabled", node)
            servers = await asyncio.to_thread(self._nova.servers_on, node)
            current = apply_results(record, plan, now=now, disabled=disabled, disabled_mark=mark)
            plan = plan_round(
                current, servers, host_back=host_back, now=now, parallel=self._parallel
            )
            results = await asyncio.gather(*(self._evacuate(i) for i in plan.evacuate))
            updated = apply_results(
                current, plan, now=time.time(), servers=servers, results=results
            )
        except NovaUnavailable as exc:
            updated = apply_results(record, plan, now=time.time(), unreachable=str(exc))
            await self._write(record, revision, updated)
            return f"{node} ({len(record.pending_instances)} instance(s) pending, {exc})"
        except NovaError as exc:
            updated = apply_results(record, plan, now=time.time(), unreachable=str(exc))
        self._say(node, plan.reason)
        if plan.evacuate:
            log.warning("%s: evacuating %s", node, ", ".join(plan.evacuate))
        if plan.mark_done:
            log.warning("%s: evacuation done; the host stays disabled until it is back", node)
        await self._write(record, revision, updated)
        return None

    async def _evacuate(self, server_id: str) -> CallResult:
        try:
            await asyncio.to_thread(self._nova.evacuate, server_id)
            return CallResult(server_id, True)
        except (NovaError, NovaUnavailable) as exc:
            log.warning("evacuate %s failed: %s", server_id, exc)
            return CallResult(server_id, False, str(exc))

    async def _enable(self, record: EvacuationRecord, revision: int, plan: Round) -> str | None:
        node = record.node
        try:
            await asyncio.to_thread(self._nova.enable_host, node)
        except (NovaError, NovaUnavailable) as exc:
            self._say(node, f"{node}: could not enable it yet ({exc})")
            return f"{node} (done, to be enabled: {exc})"
        key = self._keys.evacuation(node)
        result = await self._store.txn([Compare.unchanged(key, revision)], success=[DeleteOp(key)])
        if result.succeeded:
            log.warning("%s: %s; enabled in Nova, record deleted", node, plan.reason)
        return None

    async def _write(
        self, before: EvacuationRecord, revision: int, after: EvacuationRecord
    ) -> None:
        if after == before:
            return
        key = self._keys.evacuation(before.node)
        result = await self._store.txn(
            [Compare.unchanged(key, revision)], success=[PutOp(key, after.encode())]
        )
        if not result.succeeded:
            log.info("%s: the record changed meanwhile (fenced again?); next round", before.node)

    def _say(self, key: str, line: str) -> None:
        if self._said.get(key) != line:
            log.info("%s", line)
            self._said[key] = line


def _duration(text: str) -> float:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"not a positive duration: {text!r}")
    return seconds


_duration.__name__ = "duration"  # argparse names the type in its error


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Evacuate fenced computes through Nova.")
    parser.add_argument("--cluster", required=True)
    parser.add_argument(
        "--etcd-json", required=True, help="the etcd: block (endpoints, root, tls...) as JSON"
    )
    parser.add_argument("--nova-url", required=True)
    parser.add_argument("--token", default=None, help="a Keystone token (none: no auth)")
    parser.add_argument("--tag", default="evacuable", help="metadata/flavor tag; '' for all")
    parser.add_argument("--parallel", type=int, default=DEFAULT_PARALLEL)
    parser.add_argument(
        "--timeout", type=_duration, default=5.0, help="per Nova call (5, 5s, 500ms)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    nova = NovaApi(args.nova_url, token=args.token, timeout=args.timeout, tag=args.tag)
    spec = EtcdSpec.model_validate(json.loads(args.etcd_json))

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        store = EtcdStore.for_spec(spec, 2.0)
        try:
            log.info("evacuator up: cluster %s, Nova at %s", args.cluster, args.nova_url)
            await Evacuator(store, Keys(args.cluster, spec.root), nova, parallel=args.parallel).run(
                stop
            )
        finally:
            await store.close()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
