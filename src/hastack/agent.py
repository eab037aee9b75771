"""The hastack agent: one per node. This module only wires the parts together.

Each cycle is level-triggered: read one snapshot, decide with a pure function, act, log the
one-line reason. It wakes on any change under the cluster prefix (watch) and at least once a
renew interval, so a missed event or a silent watch costs at most one interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from hastack.controller import Controller, Decision
from hastack.errors import IndeterminateStoreError, StoreError
from hastack.eventlog import EventLog
from hastack.executor.lrm import LocalResourceManager
from hastack.membership.election import Step, StepKind, campaign, next_step, resign
from hastack.membership.lease import LeaseKeeper, LeaseLost
from hastack.membership.snapshot import read_snapshot
from hastack.model.agent_config import AgentConfig
from hastack.model.members import ClusterSnapshot, DcRecord, MemberRecord, NodeRecord
from hastack.model.requests import decode_cleanup
from hastack.model.status import NodeReport
from hastack.store import Compare, DeleteOp, Keys, PutOp, Store

__all__ = ["Agent", "MembershipLostHook"]

log = logging.getLogger("hastack.agent")

MembershipLostHook = Callable[[str], None]

# Backoff while the store cannot be reached at start: quick first retries, then a slow,
# steady poll so a daemon started before etcd joins soon after etcd comes up.
_CONNECT_BACKOFF_FIRST = 0.5
_CONNECT_BACKOFF_MAX = 5.0


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        *,
        state_dir: Path | None = None,
        on_membership_lost: MembershipLostHook | None = None,
    ) -> None:
        self.config = config
        self.keys = Keys(config.cluster, config.etcd.root)
        self.events = EventLog(state_dir / "events.jsonl" if state_dir else None, config.node)
        self._on_membership_lost = on_membership_lost
        self._store = Store(config.etcd.endpoints, config.timings.store_timeout)
        self._keeper = LeaseKeeper(self._store, config.timings)
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.epoch: int | None = None  # the epoch we hold as DC, if any
        self.highest_epoch = 0  # epochs only grow: we never accept an older DC's word
        self._last_reason = ""
        self._reported: set[str] = set()
        self._last_refusal: str | None = None
        self._handled_requests: set[str] = set()
        self.controller = Controller()
        resource_dir = (
            state_dir if state_dir is not None else Path(f"/var/lib/hastack/{config.node}")
        )
        self.lrm = LocalResourceManager(
            config.node,
            state_dir=str(resource_dir),
            netns=config.netns,
            publish=self._publish_status,
            ocf_root=config.ocf_root,
            ocf_dirs=tuple(config.ocf_agent_dirs),
        )

    # ---- lifecycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Run until stopped; survives store outages and lost memberships by rejoining."""
        # Resources keep being watched whatever happens to the membership.
        executor = asyncio.create_task(self.lrm.run(), name="executor")
        try:
            await self._wait_for_store()
            while not self._stopping.is_set():
                try:
                    await self._join()
                except StoreError as exc:
                    log.warning("could not join (%s); retrying", exc)
                    await self._pause(self.config.timings.renew_interval)
                    continue
                try:
                    await self._serve()
                except* LeaseLost as group:
                    self._membership_lost(str(group.exceptions[0]))
                    # A lost lease is never trusted again, even if the store answers later.
                    await self._keeper.revoke()
                except* Exception as group:
                    # A bug must not take the node out of the cluster for good: say so loudly,
                    # give up what we hold, and join again.
                    log.error("internal error; rejoining", exc_info=group.exceptions[0])
                    self.events.record("internal-error", error=repr(group.exceptions[0]))
                    self._membership_lost(f"internal error: {group.exceptions[0]!r}")
                    await self._keeper.revoke()
                    await self._pause(self.config.timings.renew_interval)
        finally:
            executor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await executor
            await self._leave()
            await self._store.close()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _wait_for_store(self) -> None:
        delay = _CONNECT_BACKOFF_FIRST
        endpoints = ", ".join(self._store.endpoints)
        while not self._stopping.is_set():
            try:
                await self._store.get(self.keys.dc)
                log.info("store reachable at %s", self._store.endpoint)
                return
            except StoreError as exc:
                log.error("cannot reach etcd (%s): %s; retrying in %gs", endpoints, exc, delay)
                self.events.record("store-unreachable", error=str(exc))
                await self._pause(delay)
                delay = min(delay * 2, _CONNECT_BACKOFF_MAX)

    async def _join(self) -> None:
        cfg = self.config
        lease = await self._keeper.acquire()
        member = self._member_record()
        node = NodeRecord(cfg.node, cfg.kind, member.addresses)
        # A member key left by our previous life (same node, older lease) is overwritten:
        # the node is one, its current lease is the one that counts.
        await self._store.txn(
            [],
            success=[
                PutOp(self.keys.node(cfg.node), node.encode()),
                PutOp(self.keys.member(cfg.node), member.encode(), lease=lease.id),
            ],
        )
        log.info(
            "joined cluster %s as %s (%s), lease %x", cfg.cluster, cfg.node, cfg.kind, lease.id
        )
        self.events.record("joined", lease=lease.id)

    async def _leave(self) -> None:
        """Graceful exit: give up the DC key and the lease so others need not wait for a TTL."""
        if self.epoch is not None:
            with contextlib.suppress(StoreError):
                await resign(self._store, self.keys, self.epoch)
            self._set_epoch(None, "agent stopping")
        with contextlib.suppress(StoreError):
            await self._keeper.revoke()

    # ---- the cycle ---------------------------------------------------------------------------

    async def _serve(self) -> None:
        async with asyncio.TaskGroup() as group:
            renew = group.create_task(self._keeper.run(), name="renew")
            watch = group.create_task(self._watch(), name="watch")
            await self._cycle_until_stopped()
            renew.cancel()
            watch.cancel()

    async def _cycle_until_stopped(self) -> None:
        interval = self.config.timings.renew_interval
        while not self._stopping.is_set():
            self._wake.clear()
            if not self._keeper.is_held():
                # The renew task raises LeaseLost at the same moment; let it do so.
                await asyncio.sleep(0)
                await asyncio.sleep(0.01)
                continue
            try:
                snapshot = await read_snapshot(self._store, self.keys)
            except StoreError as exc:
                self._say(f"cannot read the cluster state ({exc}); deciding nothing this cycle")
            else:
                await self._decide_and_act(snapshot)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)

    async def _decide_and_act(self, snapshot: ClusterSnapshot) -> None:
        self._report_problems(snapshot)
        if snapshot.dc is not None:
            self.highest_epoch = max(self.highest_epoch, snapshot.dc.epoch)
        cfg = self.config
        step = next_step(
            snapshot,
            node=cfg.node,
            kind=cfg.kind,
            lease=self._keeper.lease.id,
            held_epoch=self.epoch,
        )
        if step.kind is StepKind.CAMPAIGN:
            await self._campaign(step)
        elif step.kind is StepKind.LEAD:
            if self.epoch is None and snapshot.dc is not None:
                self._set_epoch(snapshot.dc.epoch, step.reason)
            self._say(step.reason)
        elif step.kind is StepKind.STEP_DOWN:
            self._set_epoch(None, step.reason)
            self._say(step.reason)
        elif step.kind is StepKind.REJOIN:
            await self._restore_member_key(step)
        else:
            self._say(step.reason)
        self._feed_executor(snapshot)
        if self.epoch is not None and snapshot.config is not None:
            decision = self.controller.decide(
                snapshot, snapshot.config, epoch=self.epoch, now=time.time()
            )
            await self._write_targets(decision, snapshot)

    def _feed_executor(self, snapshot: ClusterSnapshot) -> None:
        node = self.config.node
        self.lrm.set_config(snapshot.config, snapshot.config_revision)
        member = snapshot.members.get(node)
        target = snapshot.targets.get(node)
        # A target older than this life of the agent was meant for the node it was before.
        if member is None or snapshot.target_revisions.get(node, 0) <= member.revision:
            target = None
        dc_epoch = snapshot.dc.epoch if snapshot.dc else 0
        refusal = self.lrm.set_target(
            target, dc_epoch=dc_epoch, revision=snapshot.target_revisions.get(node, 0)
        )
        if refusal and refusal != self._last_refusal:
            log.warning("%s", refusal)
        self._last_refusal = refusal
        for name, key in snapshot.other.items():
            if not name.startswith("requests/cleanup/") or name in self._handled_requests:
                continue
            self._handled_requests.add(name)
            try:
                request = decode_cleanup(key.value)
            except ValueError as exc:
                log.warning("store: %s: %s; ignored", name, exc)
                continue
            if request.node in (None, node):
                touched = self.lrm.cleanup(request.resource)
                log.info("cleanup of %s%s", request.resource, "" if touched else " (nothing here)")

    async def _publish_status(self, report: NodeReport) -> None:
        await self._store.put(self.keys.status(self.config.node), report.encode())

    async def _write_targets(self, decision: Decision, snapshot: ClusterSnapshot) -> None:
        epoch = self.epoch
        if epoch is None:
            return
        if decision.hold:
            log.debug("%s", decision.reason)
            return
        ops: list[PutOp | DeleteOp] = []
        for node, target in sorted(decision.targets.items()):
            current = snapshot.targets.get(node)
            if current is None or current.epoch != epoch or not target.same_work(current):
                ops.append(PutOp(self.keys.target(node), target.encode()))
        for node in sorted(set(snapshot.targets) - set(decision.targets)):
            ops.append(DeleteOp(self.keys.target(node)))
        if decision.replanned:
            self._say(decision.reason)
        if not ops:
            return
        try:
            # Only the holder of this very leader key may write targets.
            result = await self._store.txn([Compare.created_at(self.keys.dc, epoch)], success=ops)
        except StoreError as exc:
            self._say(f"could not write targets ({exc})")
            return
        if not result.succeeded:
            self._set_epoch(None, "the leader key changed while writing targets")
            self.controller.forget()
            return
        released = ", ".join(
            f"{a.kind.value} {a.instance or ''} on {a.node}".replace("  ", " ")
            for a in decision.ready
        )
        if released:
            log.info("released: %s", released)

    async def _campaign(self, step: Step) -> None:
        record = DcRecord(self.config.node, epoch=0, lease=self._keeper.lease.id, since=time.time())
        try:
            won = await campaign(self._store, self.keys, record)
        except IndeterminateStoreError as exc:
            self._say(f"campaign outcome unknown ({exc}); the next snapshot will tell")
            return
        except StoreError as exc:
            self._say(f"campaign failed ({exc})")
            return
        if won is None:
            self._say("campaign lost: another agent became DC first")
            self._wake.set()
            return
        self._set_epoch(won.epoch, step.reason)

    async def _restore_member_key(self, step: Step) -> None:
        try:
            await self._store.put(
                self.keys.member(self.config.node),
                self._member_record().encode(),
                lease=self._keeper.lease.id,
            )
            self._say(f"{step.reason}: restored")
        except StoreError as exc:
            self._say(f"{step.reason}: could not restore ({exc})")

    def _member_record(self) -> MemberRecord:
        cfg = self.config
        return MemberRecord(
            name=cfg.node,
            kind=cfg.kind,
            addresses=tuple(str(a) for a in cfg.addresses),
            attributes=cfg.attributes,
            joined_at=time.time(),
            agent_pid=os.getpid(),
        )

    def _set_epoch(self, epoch: int | None, reason: str) -> None:
        if epoch == self.epoch:
            return
        if epoch is not None:
            self.highest_epoch = max(self.highest_epoch, epoch)
            log.info("became DC at epoch %d (%s)", epoch, reason)
            self.events.record("dc-elected", epoch=epoch, reason=reason)
        else:
            log.info("no longer DC (was epoch %s): %s", self.epoch, reason)
            self.events.record("dc-lost", epoch=self.epoch, reason=reason)
            self.controller.forget()
        self.epoch = epoch

    def _membership_lost(self, reason: str) -> None:
        log.error("membership lost: %s", reason)
        self.events.record("membership-lost", reason=reason)
        self._set_epoch(None, "membership lost")
        if self._on_membership_lost is not None:
            self._on_membership_lost(reason)

    async def _watch(self) -> None:
        """Wake the cycle on every change under the cluster prefix."""
        start = 0
        while True:
            try:
                if start == 0:
                    start = (await self._store.get_prefix(self.keys.dc)).revision + 1
                async for _batch in self._store.watch_prefix(self.keys.prefix, start):
                    self._wake.set()
            except StoreError as exc:
                # Compacted or unreadable: the cycle's own timer keeps us correct meanwhile.
                log.debug("watch restarting: %s", exc)
                start = 0
                await asyncio.sleep(self.config.timings.renew_interval)

    # ---- saying things once --------------------------------------------------------------------

    def _say(self, reason: str) -> None:
        if reason != self._last_reason:
            log.info("%s", reason)
            self._last_reason = reason

    def _report_problems(self, snapshot: ClusterSnapshot) -> None:
        for problem in snapshot.problems:
            if problem not in self._reported:
                log.warning("store: %s", problem)
                self.events.record("store-problem", problem=problem)
        self._reported = set(snapshot.problems)


def install_signal_handlers(agent: Agent) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.stop)
