"""The hastack agent: one per node. This module only wires the parts together.

Each cycle is level-triggered: read one snapshot, decide with a pure function, act, log the
one-line reason. It wakes on any change under the cluster prefix (watch) and at least once a
renew interval, so a missed event or a silent watch costs at most one interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from hastack.api.counters import AgentCounters, LocalView
from hastack.errors import IndeterminateStoreError, StoreError
from hastack.eventlog import EventLog
from hastack.executor.exclusive import ExclusiveGuard, Watchdog
from hastack.executor.lrm import LocalResourceManager
from hastack.fencing.watchdog import DeviceWatchdog, ensure_process_watchdog
from hastack.membership.election import Step, StepKind, campaign, depose, next_step, resign
from hastack.membership.heartbeat import Heartbeat
from hastack.membership.hedge import hedged
from hastack.membership.lease import LeaseKeeper, LeaseLost
from hastack.membership.selfcheck import SelfCheck, thread_stacks
from hastack.model.agent_config import AgentConfig
from hastack.model.config import ClusterConfig
from hastack.model.config_delta import make_delta
from hastack.model.events import (
    ClusterEvent,
    EventKind,
    failed_action_events,
    snapshot_events,
)
from hastack.model.fencing import FenceRecord, assume_recorded, decode_history, encode_history
from hastack.model.members import ClusterSnapshot, DcRecord, MemberRecord, NodeKind, NodeRecord
from hastack.model.operations import OpResult
from hastack.model.requests import decode_cleanup
from hastack.model.status import NodeReport, decode_status
from hastack.model.targets import NodeTarget, WrittenTargets
from hastack.scheduler.plan import ActionKind
from hastack.store import Compare, DeleteOp, EtcdStore, Keys, PutOp, Store, TxnResult
from hastack.store.blocking import BlockingLeaseClient
from hastack.store.etcd import is_own_member, local_first
from hastack.store.history import EventRecorder, HistoryTrimmer
from hastack.store.mirror import Mirror, follow_all
from hastack.store.status import StatusWriter
from hastack.store.tls import load_credentials

if TYPE_CHECKING:
    # What only a full node's agent uses (the DC's controller and scheduler, the fencing
    # service) is imported when first used: a compute agent never loads it
    # (docs/compute.md, "A lighter compute agent"; tests/test_import_rule.py).
    from hastack.controller import Controller, Decision
    from hastack.fencing.service import FencingService

__all__ = ["Agent", "MembershipLostHook"]

log = logging.getLogger("hastack.agent")

MembershipLostHook = Callable[[str], None]

# Backoff while the store cannot be reached at start: quick first retries, then a slow,
# steady poll so a daemon started before etcd joins soon after etcd comes up.
_CONNECT_BACKOFF_FIRST = 0.5
_CONNECT_BACKOFF_MAX = 5.0

# The watchdog fires this long before the server could expire our lease: the reset itself
# (killing processes, removing addresses) must be over by then.
_WATCHDOG_LEAD = 0.3
# How long a graceful stop may take to stop this node's exclusive resources.
_LEAVE_TIMEOUT = 30.0
# The self-check gives the cycle at least this long (5 × renew-interval + 4 × store-timeout
# otherwise: a cycle waits for a few store calls at most).
_SELF_CHECK_MIN = 5.0
# A stopping agent gives its last events this long to reach the store.
_EVENTS_FLUSH = 1.0
# A transition's event lists this many of its actions (the rest are counted).
_EVENT_ACTIONS = 20


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        *,
        state_dir: Path | None = None,
        on_membership_lost: MembershipLostHook | None = None,
        self_check: SelfCheck | None = None,
        store: Store | None = None,
    ) -> None:
        """`store`: a store client to use instead of etcd at `config.etcd` (the tests' in-memory
        store); lease renewals then run in the event loop instead of a thread of their own."""
        self.config = config
        self.keys = Keys(config.cluster, config.etcd.root)
        self.events = EventLog(state_dir / "events.jsonl" if state_dir else None, config.node)
        self._on_membership_lost = on_membership_lost
        # Renewals run in a thread of their own on a channel of their own
        # (docs/control-plane.md): a busy main loop never delays them.
        self._lease_client: BlockingLeaseClient | None = None
        if store is None:
            # The certificate files are checked before anything starts: a bad one is named.
            credentials = load_credentials(config.etcd)
            # A controller talks to the etcd member on its own host (first, whatever the
            # configuration's order): only its own host's death can then leave it waiting on
            # a member that cannot answer. Started at a random member, a survivor of a crash
            # had to move its watches off the dead host's member first — the new holder took
            # 0.10-0.17 s longer to start the VIP in half the lab's trials
            # (bench/vip_failover.py, 2026-12-07). Computes, with no member of their own,
            # spread over the members.
            endpoints = local_first(config.etcd.endpoints)
            store = EtcdStore(
                endpoints,
                config.timings.store_timeout,
                credentials=credentials,
                ordered=is_own_member(endpoints[0]),
            )
            self._lease_client = BlockingLeaseClient(endpoints, credentials=credentials)
        self._store: Store = store
        self._keeper = LeaseKeeper(self._store, config.timings)
        # Numbers for the API's metrics; the liveness thread adds its renewals' latency.
        self.counters = AgentCounters()
        self._keeper.on_renewed = self._lease_renewed
        self._keeper.on_late = self._renewal_late
        # The cluster's event history (docs/api.md §4): written off the cycle, trimmed by
        # the DC, which also records what it sees change between its views.
        self.history = EventRecorder(self._store, self.keys, config.node)
        self._trimmer: asyncio.Task[None] | None = None
        self._dc_view: ClusterSnapshot | None = None
        self._written = WrittenTargets()  # targets this DC wrote that its view may not show yet
        # Held from a decision to the end of its targets' write: the cycle's and a fence
        # confirmation's (`_confirm_fencing`) never interleave, so an older decision's
        # targets are never written over a newer one's.
        self._deciding = asyncio.Lock()
        # The revision of the last fencing record this DC wrote with targets: a view older
        # than that is not decided on — it does not show the node fenced, and a plan made on
        # it would fence the node again and take its replacement's start back.
        self._recorded_at = 0
        self._last_report: NodeReport | None = None
        self._flags = (False, False)  # this node's standby and maintenance, as last seen
        # The cluster state, kept from the store's watch streams: all of it while DC, only
        # what this node acts on otherwise (docs/control-plane.md).
        self._mirror: Mirror | None = None
        self._mirror_task: asyncio.Task[None] | None = None
        # A quiet range is asked for progress this often, and must have caught up with a
        # revision the cluster was at this long ago, or its watch is stale.
        self._progress_every = 2 * config.timings.renew_interval
        self._lag_limit = (
            self._progress_every + config.timings.renew_interval + config.timings.store_timeout
        )
        self._confirmed: list[tuple[int, float]] = []  # (cluster revision, when), oldest first
        self._paired = 0  # the configuration revision last given its delta (_pair_config)
        # An agent never goes silent: if its cycle stops running, the self-check ends the
        # process (its supervisor starts a fresh one), and a watchdog that hears nothing
        # more kills it in case even that cannot happen (docs/control-plane.md).
        timings = config.timings
        self.selfcheck = self_check or SelfCheck(
            max(_SELF_CHECK_MIN, 5 * timings.renew_interval + 4 * timings.store_timeout)
        )
        self.selfcheck.on_stall = lambda reason: self.events.record(
            "self-check-failed", reason=reason
        )
        self._alive_window = self.selfcheck.limit + 2 * timings.renew_interval
        self._executor_stall_said = False
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.epoch: int | None = None  # the epoch we hold as DC, if any
        self.highest_epoch = 0  # epochs only grow: we never accept an older DC's word
        # What the agent last said about its role and about the DC's decision: each is said
        # again only when it changes (said under one key, the DC's two lines alternated and
        # each cycle logged both: 2,300 times each in a 7-minute run at 100 computes).
        self._said: dict[str, str] = {}
        self._reported: set[str] = set()
        self._last_refusal: str | None = None
        self._handled_requests: set[str] = set()
        self._overdue_said: set[str] = set()
        self._suspected: set[str] = set()
        self._deferred: set[str] = set()  # nodes not fenced: alive and self-fencing
        self._controller: Controller | None = None
        resource_dir = (
            state_dir if state_dir is not None else Path(f"/var/lib/hastack/{config.node}")
        )
        self.watchdog = _watchdog(config, resource_dir)
        self.guard = ExclusiveGuard(config.node, resource_dir / "exclusive.jsonl", self.watchdog)
        # The node's report in parts, one transaction per publish (store/status.py).
        self._status_writer = StatusWriter(self._store, self.keys, config.node)
        self.lrm = LocalResourceManager(
            config.node,
            state_dir=str(resource_dir),
            netns=config.netns,
            publish=self._publish_status,
            ocf_root=config.ocf_root,
            ocf_dirs=tuple(config.ocf_agent_dirs),
            guard=self.guard,
            cluster_attributes=_StoreAttributes(self._store, self.keys),
            cluster={
                "node": config.node,
                "address": str(config.addresses[0]) if config.addresses else "",
                "name": config.cluster,
                "etcd-endpoints": ",".join(config.etcd.endpoints),
                "etcd-root": config.etcd.root,
                **_etcd_security(config),
            },
            kind=config.kind,
            node_attributes=config.attributes,
            on_operation=self._operation_done,
        )
        addresses = [str(a) for a in config.addresses]
        # A full node's beats leave from a process of their own (hastack.membership.beater):
        # they go on while the agent is busy, and stop one alive window after the agent last
        # vouched for itself. A compute's are judged on remote-suspect-after (3 s), which a
        # busy interpreter does not reach; a hundred more processes cost the lab's hundred
        # computes 12-20 % of a core (docs/control-plane.md, section 4).
        self.heartbeat = (
            Heartbeat(
                config.node,
                addresses,
                config.heartbeat_port,
                own_process=config.kind is NodeKind.FULL,
            )
            if addresses and config.heartbeat_port
            else None
        )
        if self.heartbeat is not None:
            self.heartbeat.alive_window = self._alive_window
        self._fencing: FencingService | None = None
        if config.kind is NodeKind.FULL:
            # A node that may become DC loads what the DC runs now, not while it takes over
            # after a failover (the first decision would wait for the imports).
            from hastack.scheduler import load_passes  # noqa: PLC0415

            load_passes()
            _ = self.controller, self.fencing
        self._peers: dict[str, tuple[tuple[str, ...], int]] = {}
        self._lives: dict[str, tuple[int | None, float]] = {}
        self._heartbeat_interval = 0.2
        self._suspect_after = 1.0
        self._remote_suspect_after = 3.0
        self._silent_now: frozenset[str] = frozenset()  # members found silent, now
        self._silence_seen = -math.inf  # monotonic: when a member was last found silent
        self._deposed: tuple[str, int] | None = None  # the DC (node, epoch) this agent deposed
        self._dc_since = 0.0
        self._self_fence: asyncio.Task[bool] | None = None

    @property
    def controller(self) -> Controller:
        """The DC's controller, made when first needed (a compute never is DC)."""
        if self._controller is None:
            from hastack.controller import Controller  # noqa: PLC0415

            self._controller = Controller()
        return self._controller

    @property
    def fencing(self) -> FencingService:
        """The fencing service, made when first needed: by the DC, or a full node keeping
        its fence agents started (a compute uses neither)."""
        if self._fencing is None:
            from hastack.fencing.service import FencingService  # noqa: PLC0415

            self._fencing = FencingService(
                self._store,
                self.keys,
                self.config.node,
                tuple(self.config.fence_agent_dirs),
                events=self.events.record,
            )
            self._fencing.confirm = self._confirm_fencing
        return self._fencing

    # ---- lifecycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def local_view(self) -> LocalView:
        """What this agent knows first hand, for the API's health endpoints (called from the
        API's thread: it reads attributes only)."""
        standby, maintenance = self._flags
        return LocalView(
            node=self.config.node,
            member=self._keeper.is_held(),
            dc=self.epoch is not None,
            epoch=self.epoch,
            standby=standby,
            maintenance=maintenance,
            cycle_stalled_for=self.selfcheck.stalled_for(),
            cycle_limit=self.selfcheck.limit,
        )

    def events_dropped(self) -> int:
        return self.history.dropped

    def record(self, kind: EventKind, text: str, **data: object) -> None:
        """An event for the cluster's history (queued; never blocks the cycle)."""
        self.history.record(ClusterEvent(kind, text, time.time(), self.config.node, data))

    async def run(self) -> None:
        """Run until stopped; survives store outages and lost memberships by rejoining."""
        # Resources keep being watched whatever happens to the membership.
        executor = asyncio.create_task(self.lrm.run(), name="executor")
        recorder = asyncio.create_task(self.history.run(), name="events")
        api = self._start_api()
        self.selfcheck.start()
        beats: list[asyncio.Task[None]] = []
        if self.heartbeat is not None:
            self.heartbeat.start()
            if self.config.kind is NodeKind.FULL:  # only full nodes judge silence
                beats.append(asyncio.create_task(self._watch_silence(), name="silence"))
        try:
            await self._wait_for_store()
            while not self._stopping.is_set():
                self._check_progress()
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
                    # Given back only once nothing exclusive runs here (or the self-fence's
                    # deadline passed): its key's going is what lets the DC count this node
                    # safe without a fence (rule 2, docs/fencing.md).
                    await self._self_fenced()
                    await self._keeper.revoke()
                except* Exception as group:
                    # A bug must not take the node out of the cluster for good: say so loudly,
                    # give up what we hold, and join again.
                    log.error("internal error; rejoining", exc_info=group.exceptions[0])
                    self.events.record("internal-error", error=repr(group.exceptions[0]))
                    self._membership_lost(f"internal error: {group.exceptions[0]!r}")
                    await self._self_fenced()
                    await self._keeper.revoke()
                    await self._pause(self.config.timings.renew_interval)
        finally:
            self.selfcheck.stop()  # leaving may take its time (stopping what is exclusive)
            await self._leave()
            for task in beats:
                task.cancel()
            if self.heartbeat is not None:
                self.heartbeat.close()
            if self._fencing is not None:
                await self._fencing.close()
            executor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await executor
            self._stop_trimmer()
            await self.history.flush(_EVENTS_FLUSH)
            recorder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recorder
            if api is not None:
                await asyncio.to_thread(api.stop)
            await self._follow(None)
            await self._store.close()
            if self._lease_client is not None:
                self._lease_client.close()

    def _start_api(self) -> _ApiHandle | None:
        if self.config.api is None:
            return None
        # Imported here: an agent that serves no API loads no HTTP server (docs/api.md).
        from hastack.api.server import ApiThread  # noqa: PLC0415

        thread = ApiThread(self.config, self)
        thread.start()
        return thread

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    def _check_progress(self) -> None:
        """The cycle runs: tell the self-check; and say so when the executor does not."""
        self.selfcheck.tick("cycle")
        stalled = self.lrm.stalled_for()
        if stalled > self.selfcheck.limit and not self._executor_stall_said:
            log.error("the executor has not run a pass for %.0fs", stalled)
            self.events.record("executor-stalled", seconds=round(stalled, 1))
            self._executor_stall_said = True
        elif stalled == 0.0:
            self._executor_stall_said = False

    async def _wait_for_store(self) -> None:
        delay = _CONNECT_BACKOFF_FIRST
        endpoints = ", ".join(self._store.endpoints)
        while not self._stopping.is_set():
            self._check_progress()
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
        # Whatever this agent mirrored before is from its previous life, and may be stale
        # (its watches were silent while it was cut off): acting on it could run a target
        # of that life — a VIP now held elsewhere. Read everything afresh, after the join.
        await self._follow(None)
        # The DC counts a member as online once it has reported in its current life: report
        # now, even if nothing changed here since the last life (else it waits for ever).
        self.lrm.announce()

    def _lease_renewed(self, round_trip: float) -> None:
        """In the renewal thread, after each good renewal: its latency for the metrics, and
        the watchdog re-armed with the new lease-safe deadline."""
        self.counters.renewals.observe(round_trip)
        self.guard.renewed(self._keeper.server_expiry_bound - _WATCHDOG_LEAD)

    async def _leave(self) -> None:
        """Graceful exit: stop what must not run twice, then give up the DC key and the
        lease, so others need not wait for a TTL and find nothing exclusive left here."""
        if self.guard.held:
            log.info("leaving: stopping exclusive resources first")
            await self.lrm.release_exclusive(time.monotonic() + _LEAVE_TIMEOUT)
        if not self.guard.held and self.watchdog is not None:
            self.watchdog.safe()
        if self.epoch is not None:
            with contextlib.suppress(StoreError):
                await resign(self._store, self.keys, self.epoch)
            self._set_epoch(None, "agent stopping")
        with contextlib.suppress(StoreError):
            await self._keeper.revoke()

    # ---- the cycle ---------------------------------------------------------------------------

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        lost = asyncio.Event()
        reasons: list[str] = []

        def on_lost(reason: str) -> None:  # called in the renewal thread
            def tell() -> None:
                reasons.append(reason)
                lost.set()

            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(tell)

        stop = threading.Event()
        renewer: threading.Thread | None = None
        if self._lease_client is not None:
            renewer = threading.Thread(
                target=self._keeper.run_blocking,
                args=(self._lease_client.renew, stop, on_lost),
                name="lease-renewal",
                daemon=True,
            )
            renewer.start()
        if self.heartbeat is not None:
            self.heartbeat.lease = self._keeper.lease.id
            self.heartbeat.member = True
        try:
            async with asyncio.TaskGroup() as group:
                if renewer is not None:
                    renew = group.create_task(_raise_when_lost(lost, reasons), name="renew")
                else:
                    renew = group.create_task(self._keeper.run(), name="renew")
                await self._cycle_until_stopped()
                renew.cancel()
        finally:
            stop.set()
            if renewer is not None:
                await asyncio.to_thread(renewer.join)

    async def _cycle_until_stopped(self) -> None:
        interval = self.config.timings.renew_interval
        unheld_since: float | None = None
        while not self._stopping.is_set():
            self._wake.clear()
            self._check_progress()
            if not self._keeper.is_held():
                # The renew task raises LeaseLost at the same moment; let it do so. If it
                # has not within a store timeout and a renew interval, something on its way
                # is stuck (seen once, at 30 computes while etcd stalled for 30 s): the
                # membership is lost all the same, and saying so here is what lets the node
                # rejoin instead of waiting for ever without a membership.
                now = time.monotonic()
                unheld_since = now if unheld_since is None else unheld_since
                limit = self.config.timings.store_timeout + self.config.timings.renew_interval
                if now - unheld_since > limit:
                    log.error(
                        "the lease keeper has not reported the lost lease %.1fs after its "
                        "deadline; its threads:\n%s",
                        now - unheld_since,
                        thread_stacks(),
                    )
                    raise LeaseLost(self._keeper.lost_reason or "lease lost (keeper silent)")
                await asyncio.sleep(0)
                await asyncio.sleep(0.01)
                continue
            unheld_since = None
            self.guard.set_deadline(
                self._keeper.server_expiry_bound - _WATCHDOG_LEAD,
                alive_until=time.monotonic() + self._alive_window,
            )
            mirror = await self._follow(self._ranges())
            if self._is_stale(mirror):
                await self._resume_elsewhere(mirror)
                continue
            if mirror.loaded:
                if self.epoch is not None:
                    await self._pair_config(mirror, self.epoch)
                await self._decide_and_act(mirror.snapshot())
            else:
                self._say("reading the cluster state", about="role")
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancellation
            # that comes as the wake is set, and the cycle would go on after its end.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()

    async def _decide_and_act(self, snapshot: ClusterSnapshot) -> None:
        self._report_problems(snapshot)
        spec = (
            next((n for n in snapshot.config.nodes if n.node == self.config.node), None)
            if snapshot.config is not None
            else None
        )
        self._flags = (spec.standby, spec.maintenance) if spec is not None else (False, False)
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
            self._say(step.reason, about="role")
        elif step.kind is StepKind.STEP_DOWN:
            self._set_epoch(None, step.reason)
            self._say(step.reason, about="role")
        elif step.kind is StepKind.REJOIN:
            await self._restore_member_key(step)
        else:
            self._say(step.reason, about="role")
        self._feed_executor(snapshot)
        self._update_peers(snapshot)
        known = snapshot.config
        if cfg.kind is NodeKind.FULL and known is not None and known.properties.stonith_enabled:
            # Whoever may have to fence keeps its fence agents started (docs/fencing.md).
            self.fencing.prepare(known)
        if self.epoch is None and snapshot.dc is not None and snapshot.config is not None:
            await self._depose_if_silent(snapshot, snapshot.config)
        if self.epoch is not None and self._mirror is not None and not self._is_full(self._mirror):
            # Just elected: the DC decides on the whole cluster, never on a follower's view
            # (without other nodes' reports it would start what already runs elsewhere).
            self._wake.set()
            return
        if self.epoch is not None:
            for event in snapshot_events(
                self._dc_view, snapshot, writer=self.config.node, now=time.time()
            ):
                self._count_fencing(event)
                self.history.record(event)
                if event.kind is EventKind.CONNECTIVITY:
                    # Also in the agent's own log, where the lab's checkers read it.
                    self.events.record("connectivity", text=event.text, data=dict(event.data))
            self._dc_view = snapshot
        if self.epoch is not None and snapshot.config is not None:
            async with self._deciding:
                if self.epoch is None:
                    return
                if snapshot.revision < self._recorded_at:
                    # The watch brings the record within milliseconds, and wakes the cycle.
                    self._say(f"waiting for the view to reach revision {self._recorded_at}")
                    return
                await self._decide_as_dc(snapshot, snapshot.config, self.epoch)

    async def _decide_as_dc(
        self,
        snapshot: ClusterSnapshot,
        config: ClusterConfig,
        epoch: int,
        fence: _FenceWrite | None = None,
    ) -> bool | None:
        """Decide on `snapshot`, start the fencing it asks for, write the targets (with
        `fence`'s record, in the same transaction). Under `_deciding`. What `_write_targets`
        returns."""
        started = time.monotonic()
        decision = self.controller.decide(
            snapshot,
            config,
            epoch=epoch,
            now=time.time(),
            mono=time.monotonic(),
            suspects=self._suspects(snapshot, config),
            restamped=self._written.restamps(),
        )
        if decision.replanned:
            self.counters.scheduler.observe(time.monotonic() - started)
            self._record_transition(decision)
        self._say_overdue(decision.overdue)
        for action in decision.ready:
            if action.kind is ActionKind.FENCE:
                if self._self_fencing(action.node, snapshot, config):
                    continue
                self.fencing.ensure(action.node, config, epoch)
        return await self._write_targets(decision, snapshot, fence)

    async def _confirm_fencing(self, record: FenceRecord, epoch: int) -> bool | None:
        """The fence device said the node is off: record it and write the targets that
        follow from it in one transaction (by CAS on this DC's epoch, the node's history and
        its node record), decided on the DC's view as it will read once the record is in
        (`assume_recorded`) — the replacement starts at the confirmation, not a watch event
        and a cycle later (docs/fencing.md). True: recorded, with the targets; False: no
        longer DC; None: nothing written, the caller records it alone (the view is not the
        DC's whole one yet, the decision holds, the history or the node changed, no answer)."""
        async with self._deciding:
            mirror = self._mirror
            if self.epoch != epoch or mirror is None or not self._is_full(mirror):
                return None
            snapshot = mirror.snapshot()
            if snapshot.revision < self._recorded_at:
                return None  # not yet showing the last record (another node's fencing)
            view = assume_recorded(snapshot, record)
            if view is None or snapshot.config is None:
                return None
            node = record.node
            history = self.keys.fence_history(node)
            known = snapshot.nodes.get(node)
            fence = _FenceWrite(
                record,
                compares=(
                    Compare.unchanged(history, snapshot.fencing_revisions.get(node, 0)),
                    # Rejoined meanwhile: its new life is not the one the device put off.
                    Compare.unchanged(self.keys.node(node), known.revision if known else 0),
                ),
                put=PutOp(history, encode_history(view.fencing[node])),
            )
            try:
                return await self._decide_as_dc(view, snapshot.config, epoch, fence)
            except Exception:
                log.exception("confirming the fencing of %s with the targets failed", node)
                self.controller.forget()
                return None

    def _record_transition(self, decision: Decision) -> None:
        actions = decision.plan.actions
        if not actions:
            return
        self.record(
            EventKind.TRANSITION,
            f"{decision.reason} (epoch {self.epoch})",
            epoch=self.epoch,
            actions=[
                {
                    "kind": a.kind.value,
                    "resource": a.instance,
                    "node": a.node,
                    "reason": a.reason,
                }
                for a in actions[:_EVENT_ACTIONS]
            ],
            more=max(0, len(actions) - _EVENT_ACTIONS),
        )

    def _count_fencing(self, event: ClusterEvent) -> None:
        """Fencing this DC ran (by its own fencing service), for the metrics."""
        if event.kind is not EventKind.FENCING or event.data.get("by") != self.config.node:
            return
        if event.data.get("result") == "success":
            self.counters.fencing_success += 1
        else:
            self.counters.fencing_failed += 1

    def _update_peers(self, snapshot: ClusterSnapshot) -> None:
        self._peers = {
            name: (tuple(m.addresses), m.heartbeat_port)
            for name, m in snapshot.members.items()
            if m.addresses and m.heartbeat_port
        }
        # When this agent first saw each member's current life: a member's silence is only
        # held against it from then on. A life begins with the write of the member key
        # (MemberRecord.revision, its mod_revision): an agent that rejoins before its old
        # lease expired overwrites its old key, whose create revision stays, yet it is a
        # new life (else the DC fenced it again the moment it rejoined).
        now = time.monotonic()
        lives = {name: m.revision for name, m in snapshot.members.items()}
        for name, revision in lives.items():
            if self._lives.get(name, (None, 0.0))[0] != revision:
                self._lives[name] = (revision, now)
        for name in list(self._lives):
            if name not in lives:
                del self._lives[name]
        if snapshot.config is not None:
            self._heartbeat_interval = snapshot.config.properties.heartbeat_interval
            self._suspect_after = snapshot.config.properties.suspect_after
            self._remote_suspect_after = snapshot.config.properties.remote_suspect_after
        if self.heartbeat is not None:
            # Beats go to the full nodes only: they are the ones that may be DC and judge
            # silence. A hundred computes beating to each other would be 50,000 datagrams a
            # second; beating to three controllers, 1,500.
            self.heartbeat.set_peers(
                {
                    name: peer
                    for name, peer in self._peers.items()
                    if snapshot.members[name].kind is NodeKind.FULL
                },
                watched=self._peers,  # probed near their silence: computes too
            )
            self.heartbeat.probing = self.config.kind is NodeKind.FULL
            self.heartbeat.interval = self._heartbeat_interval
            self.heartbeat.suspect_after = self._suspect_after
            # Computes are judged on a longer silence: one starved of CPU for a second is
            # not fenced (docs/compute.md, section 6).
            self.heartbeat.floors = {
                name: self._remote_suspect_after
                for name in self._peers
                if snapshot.members[name].kind is NodeKind.REMOTE
            }

    def _suspects(self, snapshot: ClusterSnapshot, config: ClusterConfig) -> frozenset[str]:
        """Members whose heartbeats stopped, when fencing can act on it (else only the
        lease decides). If every other member looks silent, the fault is more likely ours:
        suspect nobody rather than fence the whole cluster."""
        if self.heartbeat is None or not config.properties.stonith_enabled:
            return frozenset()
        if not config.fencing.devices:
            return frozenset()
        beating = [n for n in self._peers if n != self.config.node]
        since = self._since()
        silent = self.heartbeat.silent(beating, config.properties.suspect_after, since=since)
        if len(beating) >= 2 and len(silent) == len(beating):
            self._say(f"every other member looks silent ({', '.join(silent)}); suspecting none")
            return frozenset()
        for node in set(silent) - self._suspected:
            # A step of the failover pipeline, timed by bench/vip_failover.py.
            log.warning("suspecting %s: no heartbeat for %gs", node, self.heartbeat.threshold(
                node, config.properties.suspect_after))  # fmt: skip
            quiet = round(self.heartbeat.silence(node, since=since), 4)
            self.events.record("node-suspected", peer=node, silent_for=quiet)
        self._suspected = set(silent)
        return frozenset(silent)

    def _self_fencing(self, node: str, snapshot: ClusterSnapshot, config: ClusterConfig) -> bool:
        """A full node that lost its membership but is alive, beating and saying so, is
        self-fencing: not fenced — it is healthy, and the plan waits for its lease's end and
        the self-fencing margin instead (rule 2), which it gives back only once nothing
        exclusive runs there. Withholding a fence never starts anything twice; at worst
        (the datagram forged) recovery waits for rule 2. Said once per node."""
        record = snapshot.nodes.get(node)
        if self.heartbeat is None or record is None or record.kind is not NodeKind.FULL:
            return False
        alive = self.heartbeat.silent_for(node) < self.heartbeat.threshold(
            node, config.properties.suspect_after
        )
        if not (alive and self.heartbeat.gave_up(node)):
            self._deferred.discard(node)
            return False
        if node not in self._deferred:
            log.warning("not fencing %s: it lost its membership and says so, alive", node)
            self.events.record("fence-deferred", peer=node, reason="self-fencing")
            self._deferred.add(node)
        return True

    def _since(self) -> dict[str, float]:
        return {name: seen for name, (_, seen) in self._lives.items()}

    async def _depose_if_silent(self, snapshot: ClusterSnapshot, config: ClusterConfig) -> None:
        """A DC that stopped sending heartbeats cannot fence or recover anything until its
        lease expires. With fencing configured, any member that has not heard it for
        suspect-after deletes its leader key (by CAS on its epoch): a new DC is elected at
        once and fences the silent one before recovering what it ran. If the old DC was in
        fact alive, it merely loses the key: it can write nothing any more (every DC write
        compares the epoch), and the next DC sees it healthy and leaves it alone."""
        dc = snapshot.dc
        if dc is None or dc.node == self.config.node or self.heartbeat is None:
            return
        if self.config.kind is not NodeKind.FULL:
            return  # computes hear no beats (they send them to the full nodes only)
        if not (config.properties.stonith_enabled and config.fencing.devices):
            return
        if dc.node not in self._peers:
            return  # it sends no heartbeats: only its lease tells
        if self._deposed == (dc.node, dc.epoch):
            return  # deposed already, by this agent: the view has not caught up yet
        silent = self.heartbeat.silent(
            [dc.node], config.properties.suspect_after, since=self._since()
        )
        # A DC that says it lost its membership no longer acts as DC: its key would stay
        # until its lease expired on the server.
        gave_up = self.heartbeat.gave_up(dc.node) == dc.lease
        if not silent and not gave_up:
            return
        try:
            deposed = await hedged(
                lambda: depose(self._store, self.keys, dc.epoch, self.config.node),
                within=self.config.timings.store_timeout,
            )
        except StoreError as exc:
            self._say(f"could not depose the silent DC {dc.node} ({exc})")
            return
        if deposed:
            # Asked again before the view shows the key gone, `depose` would find its own
            # mark and say True again: one deposition logged and recorded 19 times in a
            # failover (the bench of 2026-12-07 06:00), each a hedged store call.
            self._deposed = (dc.node, dc.epoch)
            why = (
                f"no heartbeat for {config.properties.suspect_after:g}s"
                if silent
                else "it lost its membership"
            )
            log.warning("deposed DC %s (epoch %d): %s", dc.node, dc.epoch, why)
            self.events.record(
                "dc-deposed", peer=dc.node, epoch=dc.epoch, reason="silent" if silent else "gave-up"
            )
            self.record(
                EventKind.DEPOSED,
                f"{self.config.node} deposed DC {dc.node} (epoch {dc.epoch}): {why}",
                dc=dc.node,
                epoch=dc.epoch,
            )
            self._wake.set()

    async def _watch_silence(self) -> None:
        """Wake the cycle the moment a member falls silent, rather than at the next tick."""
        assert self.heartbeat is not None
        silent: set[str] = set()
        while True:
            self._silent_now = frozenset(silent)
            # Until the first member not silent yet would be (a beat moves that moment on:
            # looked at again then), at most a quarter of the interval: suspicion is acted on
            # within milliseconds of its moment (docs/control-plane.md).
            peers = list(self._peers)
            due = self.heartbeat.next_silence(peers, self._suspect_after, since=self._since())
            await asyncio.sleep(min(self._heartbeat_interval / 4, due + 0.001))
            now_silent = set(
                self.heartbeat.silent(list(self._peers), self._suspect_after, since=self._since())
            )
            if now_silent:
                self._silence_seen = time.monotonic()
            if now_silent - silent:
                since = self._since()
                for node in sorted(now_silent - silent):
                    # The first step of the failover pipeline (bench/vip_failover.py): the
                    # last beat heard is `silent_for` before this — or, for a member that
                    # has sent none in its current life, the moment its life was first seen.
                    quiet = round(self.heartbeat.silence(node, since=since), 4)
                    self.events.record("node-silent", peer=node, silent_for=quiet)
                self._wake.set()
                self._leave_silent_hosts(now_silent - silent)
            silent = now_silent

    def _in_failover(self) -> bool:
        """A member is silent now, or was within a lease TTL: etcd may still be electing a
        leader in place of one that died with it."""
        since = time.monotonic() - self._silence_seen
        return bool(self._silent_now) or since < self.config.timings.lease_ttl

    def _leave_silent_hosts(self, nodes: set[str]) -> None:
        """Stop reading the store through the etcd member on a host gone silent: its watches
        would stay open and say nothing (what the DC writes for this node — its target, the
        entities it is to serve — would wait for the lag check, seconds after the fence)."""
        if not isinstance(self._store, EtcdStore):
            return
        for node in sorted(nodes):
            addresses = self._peers[node][0] if node in self._peers else ()
            if addresses and self._store.leave_hosts(addresses):
                log.warning("left the store member on %s: no heartbeat", node)
                self.events.record("store-member-left", peer=node, addresses=list(addresses))

    def _feed_executor(self, snapshot: ClusterSnapshot) -> None:
        node = self.config.node
        # What the last report listed may run here until the probes answer, unless a fence
        # since then stopped it all.
        fenced = snapshot.fenced_since_report(node)
        self.lrm.set_previous(None if fenced else snapshot.statuses.get(node))
        self.lrm.set_config(
            snapshot.config, snapshot.config_revision, known_nodes=len(snapshot.known_nodes)
        )
        # A target older than this life of the agent was meant for the node it was before.
        target = snapshot.current_target(node)
        dc_epoch = snapshot.dc.epoch if snapshot.dc else 0
        refusal = self.lrm.set_target(
            target, dc_epoch=dc_epoch, revision=snapshot.target_revisions.get(node, 0)
        )
        if refusal and refusal != self._last_refusal:
            log.warning("%s", refusal)
        self._last_refusal = refusal
        self.lrm.peers_fenced(snapshot.fences())
        requests = self.keys.relative(self.keys.cleanup_requests)
        for name, key in snapshot.other.items():
            if not name.startswith(requests) or name in self._handled_requests:
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

    def _operation_done(self, instance: str, op: str, result: OpResult, began: float) -> None:
        """A target's operation ended (a step of the failover pipeline: bench/vip_failover.py)."""
        self.events.record(
            "operation",
            resource=instance,
            op=op,
            rc=result.rc,
            began=began,
            seconds=round(result.duration, 4),
            **(result.marks or {}),
        )

    async def _publish_status(self, report: NodeReport) -> None:
        await self._status_writer.publish(report)
        # While probing, the report carries the last life's failures, recorded then.
        if not report.probing:
            for event in failed_action_events(
                self.config.node, self._last_report, report, now=time.time()
            ):
                self.history.record(event)
        self._last_report = report

    async def _write_targets(
        self, decision: Decision, snapshot: ClusterSnapshot, fence: _FenceWrite | None = None
    ) -> bool | None:
        """Write what changed of the decision's targets (with `fence`'s record, in the same
        transaction). True: written (or nothing to write); False: no longer DC; None:
        nothing written (holding, no answer, a compare of `fence` or of an assignment map
        failed)."""
        epoch = self.epoch
        if epoch is None:
            return False
        if decision.hold:
            self._say(decision.reason, about="decision")
            return None
        ops: list[PutOp | DeleteOp] = []
        out: dict[str, NodeTarget | None] = {}
        restamped: dict[str, int] = {}  # node -> the revision of the older DC's same work
        # What the store holds for each node: the view's, or what this DC wrote at a revision
        # its view has not reached yet (WrittenTargets: not written again meanwhile).
        nodes = set(decision.targets) | set(snapshot.targets) | self._written.nodes()
        held: dict[str, tuple[NodeTarget | None, bool]] = {
            node: self._written.current(
                epoch,
                node,
                snapshot.targets.get(node),
                snapshot.target_revisions.get(node, 0),
                snapshot.revision,
            )
            for node in sorted(nodes)
        }
        for node, target in sorted(decision.targets.items()):
            current, seen = held[node]
            # A target the node works on stays its target while the work asked is the same,
            # whatever configuration the DC plans for now (NodeTarget.stands_in).
            report = snapshot.statuses.get(node)
            taken = (
                seen
                and report is not None
                and report.working == snapshot.target_revisions.get(node, 0) > 0
            )
            if (
                current is None
                or current.epoch != epoch
                or not target.stands_in(current, taken=taken)
                or (seen and snapshot.target_is_void(node))
            ):
                written = dataclasses.replace(target, at=time.time())
                ops.append(PutOp(self.keys.target(node), written.encode()))
                out[node] = written
                if (
                    seen
                    and current is not None
                    and current.epoch != epoch
                    and target.same_work(current, taken=taken)
                    and not snapshot.target_is_void(node)
                ):
                    restamped[node] = snapshot.target_revisions.get(node, 0)
        for node in sorted(set(held) - set(decision.targets)):
            if held[node][0] is not None:
                ops.append(DeleteOp(self.keys.target(node)))
                out[node] = None
        # Assignment maps go with the targets that carry their grants, each compared with
        # the revision it was computed from (docs/assign.md).
        compares = [Compare.created_at(self.keys.dc, epoch)]
        for name, record in sorted(decision.assignments.records.items()):
            compares.append(Compare.unchanged(self.keys.assign_map(name), record.revision))
            ops.append(PutOp(self.keys.assign_map(name), record.encode()))
        if fence is not None:
            compares.extend(fence.compares)
            ops.append(fence.put)
        if decision.replanned:
            self._say(decision.reason, about="decision")
        if not ops:
            return True
        try:
            # Only the holder of this very leader key may write targets. During a failover
            # the write is re-sent while unanswered: written while etcd elects a leader in
            # place of one that died with the silent host, it would wait out a whole store
            # timeout. A failover lasts as long as a member is silent and a lease TTL after:
            # the silent member leaves the view once it is fenced (its key goes), typically
            # before etcd has a new leader (the 3.29 s outlier of docs/fencing.md).
            if fence is not None:
                result = await hedged(
                    lambda: self._write_with_record(compares, ops, fence.record),
                    within=self.config.timings.store_timeout,
                )
            elif self._in_failover():
                result = await hedged(
                    lambda: self._store.txn(compares, success=ops),
                    within=self.config.timings.store_timeout,
                )
            else:
                result = await self._store.txn(compares, success=ops)
        except StoreError as exc:
            self._say(f"could not write targets ({exc})")
            return None
        if not result.succeeded:
            if (decision.assignments.records or fence is not None) and await self._still_dc(epoch):
                # An assignment map changed under us, or the fencing history or the node's
                # record: a decision made on a view with the record in is void (the next
                # one is made from the view as it is).
                self._say("a compare of the targets' write failed; deciding again")
                if fence is not None:
                    self.controller.forget()
                self._wake.set()
                return None
            self._set_epoch(None, "the leader key changed while writing targets")
            self.controller.forget()
            return False
        self._written.record(epoch, result.revision, out, restamped)
        if fence is not None:
            self._recorded_at = result.revision
            # The confirmation, then the schedule: one write (bench/vip_failover.py's steps).
            self.events.record(
                "fence-recorded", peer=fence.record.node, result=fence.record.result, targets=True
            )
        # A step of the failover pipeline (bench/vip_failover.py): targets out.
        self.events.record("targets-written", keys=sorted(self.keys.relative(o.key) for o in ops))
        for note in decision.assignments.notes:
            log.info("assign %s", note)
            self.events.record("assign", note=note)
        released = ", ".join(
            f"{a.kind.value} {a.instance or ''} on {a.node}".replace("  ", " ")
            for a in decision.ready
        )
        if released:
            log.info("released: %s", released)
        return True

    async def _write_with_record(
        self, compares: list[Compare], ops: list[PutOp | DeleteOp], record: FenceRecord
    ) -> TxnResult:
        """The targets' write with a fencing record: re-sent while unanswered (`hedged`), a
        copy that finds the history changed may be answering after another copy's success;
        the record in the history says so (and the revision of that write)."""
        result = await self._store.txn(compares, success=ops)
        if result.succeeded:
            return result
        kv = await self._store.get(self.keys.fence_history(record.node))
        try:
            mine = kv is not None and record in decode_history(kv.value)
        except ValueError:
            mine = False
        if kv is not None and mine:
            return TxnResult(True, kv.mod_revision, ())
        return result

    async def _still_dc(self, epoch: int) -> bool:
        try:
            kv = await self._store.get(self.keys.dc)
        except StoreError:
            return False
        return kv is not None and kv.create_revision == epoch

    async def _campaign(self, step: Step) -> None:
        record = DcRecord(self.config.node, epoch=0, lease=self._keeper.lease.id, since=time.time())
        try:
            # Re-sent while unanswered (hastack.membership.hedge): the campaign that follows
            # the crash of a DC that also led etcd is sent while etcd elects a new leader.
            won = await hedged(
                lambda: campaign(self._store, self.keys, record),
                within=self.config.timings.store_timeout,
            )
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
            heartbeat_port=cfg.heartbeat_port if cfg.addresses else 0,
        )

    def _set_epoch(self, epoch: int | None, reason: str) -> None:
        if epoch == self.epoch:
            return
        if epoch is not None:
            self.highest_epoch = max(self.highest_epoch, epoch)
            self._dc_since = time.monotonic()
            log.info("became DC at epoch %d (%s)", epoch, reason)
            self.events.record("dc-elected", epoch=epoch, reason=reason)
            self.counters.dc_changes += 1
            self.record(
                EventKind.ELECTION,
                f"{self.config.node} became DC at epoch {epoch}: {reason}",
                epoch=epoch,
                reason=reason,
            )
            self._dc_view = None
            self._stop_trimmer()
            trimmer = HistoryTrimmer(self._store, self.keys)
            self._trimmer = asyncio.get_running_loop().create_task(trimmer.run(), name="trim")
        else:
            log.info("no longer DC (was epoch %s): %s", self.epoch, reason)
            self.events.record("dc-lost", epoch=self.epoch, reason=reason)
            self._stop_trimmer()
            self._dc_view = None
            if self._controller is not None:
                self._controller.forget()
            if self._fencing is not None:
                self._fencing.cancel()
        self.epoch = epoch

    def _stop_trimmer(self) -> None:
        if self._trimmer is not None:
            self._trimmer.cancel()
            self._trimmer = None

    def _renewal_late(self, gap: float) -> None:
        """A renewal used over half of its margin (called in the renewal thread): the node
        came close to losing its membership. Said, and recorded for the benchmarks."""
        limit = self.config.timings.loss_after
        log.warning("lease renewal late: %.2fs after the previous one (lost at %gs)", gap, limit)
        self.events.record("lease-renewal-late", gap=round(gap, 3), limit=limit)

    def _membership_lost(self, reason: str) -> None:
        log.error("membership lost: %s", reason)
        self.counters.membership_losses += 1
        self.record(EventKind.MEMBERSHIP, f"{self.config.node} lost its membership: {reason}")
        if self.heartbeat is not None:
            # Alive, self-fencing, and saying so until it joins again: a lossy node that lost
            # its lease is not suspected and fenced (recovery waits for the lease's expiry).
            self.heartbeat.member = False
        self.events.record("membership-lost", reason=reason)
        self._set_epoch(None, "membership lost")
        # Self-fencing: whatever must not run twice is stopped here before our lease can
        # expire on the server; if that cannot be done in time, the watchdog resets the node.
        if self._self_fence is None or self._self_fence.done():
            deadline = self._keeper.server_expiry_bound - _WATCHDOG_LEAD
            self._self_fence = asyncio.get_running_loop().create_task(
                self._release_exclusive(deadline), name="self-fence"
            )
        asyncio.get_running_loop().create_task(self._stop_isolated(), name="stop-isolated")
        if self._on_membership_lost is not None:
            self._on_membership_lost(reason)

    async def _self_fenced(self) -> None:
        """Wait for the self-fence under way (it ends by its own deadline)."""
        task = self._self_fence
        if task is not None and not task.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(task)

    async def _stop_isolated(self) -> None:
        """Stop what must not outlive an isolation (a cache: docs/memcached.md)."""
        stopped = await self.lrm.stop_isolated()
        if stopped:
            log.warning("isolated: stopped %s", ", ".join(stopped))
            self.events.record("isolation-stopped", resources=stopped)

    async def _release_exclusive(self, deadline: float) -> bool:
        held = sorted(self.guard.held)
        if not held:
            return True
        log.warning(
            "self-fencing: stopping %s before %.2fs from now",
            ", ".join(held),
            deadline - time.monotonic(),
        )
        done = await self.lrm.release_exclusive(deadline)
        if done:
            self.events.record("self-fenced", resources=held)
            log.warning("self-fenced: nothing exclusive runs here any more")
        else:
            self.events.record("self-fence-incomplete", left=sorted(self.guard.held))
            log.error(
                "self-fencing incomplete (%s still held): the watchdog will reset the node",
                ", ".join(sorted(self.guard.held)),
            )
        return done

    def _ranges(self) -> tuple[str, ...]:
        """What this agent follows: everything while DC; otherwise what it acts on."""
        keys, node = self.keys, self.config.node
        if self.epoch is not None:
            return (keys.prefix,)
        return (
            keys.dc,
            # The configuration by its deltas: a change costs what changed (store/mirror.py).
            keys.config_delta,
            keys.members,
            keys.nodes,
            keys.target(node),
            # Every node's fencing, not only its own: some agents act on a peer's fence at
            # once (`Driver.hears_fencing`). A few small keys, written rarely.
            keys.fencing,
            keys.cleanup_requests,
        )

    def _is_stale(self, mirror: Mirror) -> bool:
        """Has a watch fallen behind the cluster? A member cut off from its cluster (etcd with
        pre-vote keeps its leader, so `hasleader` does not end its watches) holds them open
        and silent; the lease renewals tell the cluster's real revision. A range that has not
        reached the revision the cluster was at `lag-limit` ago is followed again through another
        member, from where it is (`_resume_elsewhere`)."""
        if self._lease_client is None or not mirror.loaded:
            return False
        now = time.monotonic()
        latest = self._lease_client.confirmed
        if latest[0] and (not self._confirmed or self._confirmed[-1] != latest):
            self._confirmed.append(latest)
        older = [c for c in self._confirmed if now - c[1] >= self._lag_limit]
        self._confirmed = [c for c in self._confirmed if now - c[1] < 2 * self._lag_limit]
        if not older:
            return False
        revision = older[-1][0]
        behind = mirror.is_behind(revision)
        if not behind:
            return False
        names = ", ".join(self.keys.relative(r) or "everything" for r in behind)
        log.warning(
            "the store's watch on %s lags the cluster (not at revision %d after %.1fs); "
            "resuming it through another member from where it is",
            names,
            revision,
            self._lag_limit,
        )
        self.events.record("watch-stale", ranges=names, revision=revision)
        self._confirmed.clear()
        return True

    async def _pair_config(self, mirror: Mirror, epoch: int) -> None:
        """A configuration written around `write_config` (with etcdctl: no delta) is given
        its delta by the DC: the other nodes follow the configuration by its deltas only, and
        would never see it. The delta carries the whole configuration and the revision it was
        stored at, from the revision of the last delta (what they hold); by CAS on this DC's
        epoch and both keys. Once per configuration revision."""
        unpaired = mirror.unpaired_config()
        if unpaired is None or unpaired[0].mod_revision == self._paired:
            return
        config, paired = unpaired
        self._paired = config.mod_revision
        delta = make_delta(None, config.value, paired, revision=config.mod_revision)
        try:
            result = await self._store.txn(
                [
                    Compare.created_at(self.keys.dc, epoch),
                    Compare.unchanged(self.keys.config, config.mod_revision),
                    Compare.unchanged(self.keys.config_delta, paired),
                ],
                success=[PutOp(self.keys.config_delta, delta)],
            )
        except StoreError as exc:
            log.info("pairing the configuration with its delta failed (%s); retrying", exc)
            self._paired = 0
            return
        if result.succeeded:
            log.warning(
                "the configuration at revision %d was written without its delta (around "
                "hastack: etcdctl?); its delta written for the other nodes",
                config.mod_revision,
            )
            self.events.record("config-paired", revision=config.mod_revision)

    def _is_full(self, mirror: Mirror) -> bool:
        return mirror.ranges == (self.keys.prefix,) and mirror.loaded

    async def _follow(self, ranges: tuple[str, ...] | None) -> Mirror:
        """Follow `ranges` of the store (None: nothing any more), keeping the mirror we have
        if it already follows them. Every change wakes the cycle."""
        mirror = self._mirror
        if mirror is not None and ranges is not None and mirror.ranges == ranges:
            return mirror
        await self._stop_following()
        if ranges is None:
            self._mirror = None
            return Mirror(self.keys, ())
        mirror = Mirror(self.keys, ranges)
        self._mirror = mirror
        self._start_following(mirror)
        return mirror

    async def _resume_elsewhere(self, mirror: Mirror) -> None:
        """Replace a lagging watch: leave the etcd member it runs through and follow the same
        ranges through the next one, each from the revision the mirror holds it at. What the
        mirror holds is right as of that revision; only what came after is missing. (It used
        to be dropped and every range read again: at 100 computes, the DC's whole prefix.)"""
        await self._stop_following()
        if isinstance(self._store, EtcdStore):
            self._store.leave_hosts({self._store.endpoint.rpartition(":")[0]})
        self._start_following(mirror)

    def _start_following(self, mirror: Mirror) -> None:
        # Progress notifications: a quiet range still learns the revision it is current at
        # (`_is_stale`).
        self._mirror_task = asyncio.create_task(
            follow_all(self._store, mirror, self._wake.set, self._progress_every), name="mirror"
        )

    async def _stop_following(self) -> None:
        if self._mirror_task is None:
            return
        self._mirror_task.cancel()
        try:
            await self._mirror_task
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("following the store failed")
        self._mirror_task = None

    # ---- saying things once --------------------------------------------------------------------

    def _say_overdue(self, overdue: Mapping[str, str]) -> None:
        for node, why in overdue.items():
            if node not in self._overdue_said:
                log.warning("giving up waiting: %s; treating %s as failed", why, node)
                self.events.record("node-overdue", peer=node, reason=why)
                self.record(EventKind.OVERDUE, f"gave up waiting: {why}", node=node)
        self._overdue_said = set(overdue)

    def _say(self, reason: str, *, about: str = "cycle") -> None:
        """Log `reason` unless it is what was last said `about` the same thing."""
        if self._said.get(about) != reason:
            log.info("%s", reason)
            self._said[about] = reason

    def _report_problems(self, snapshot: ClusterSnapshot) -> None:
        for problem in snapshot.problems:
            if problem not in self._reported:
                log.warning("store: %s", problem)
                self.events.record("store-problem", problem=problem)
        self._reported = set(snapshot.problems)


@dataclasses.dataclass(frozen=True)
class _FenceWrite:
    """A fencing record to write with the targets: its history's put, and the compares
    under which the decision made on it holds."""

    record: FenceRecord
    compares: tuple[Compare, ...]
    put: PutOp


class _StoreAttributes:
    """Node attributes the executor reads or writes through the store (docs/attributes.md):
    permanent ones in the configuration (by CAS, as `hastack` commands change it), other
    nodes' transient ones from their reports, while they are online."""

    def __init__(self, store: Store, keys: Keys) -> None:
        self._store = store
        self._keys = keys

    async def set_permanent(self, node: str, name: str, value: str | None) -> None:
        # The operations layer only for this (an OCF agent's crm_attribute -l forever).
        from hastack.ops.cluster import Cluster  # noqa: PLC0415
        from hastack.ops.configure import change_config  # noqa: PLC0415
        from hastack.ops.edits import set_node_attribute  # noqa: PLC0415

        await change_config(
            Cluster(self._keys.cluster, self._store, self._keys),
            set_node_attribute(node, name, value),
        )

    async def transient_of(self, node: str, name: str) -> str | None:
        if await self._store.get(self._keys.member(node)) is None:
            return None  # not online: its transient attributes are gone with it
        # Attributes are in the report's head: its parts are not needed (model/status.py).
        found = await self._store.get(self._keys.status(node))
        if found is None:
            return None
        try:
            return decode_status(node, found.value).attributes.get(name)
        except ValueError:
            return None


async def _raise_when_lost(lost: asyncio.Event, reasons: list[str]) -> None:
    await lost.wait()
    raise LeaseLost(reasons[0] if reasons else "lease lost")


def _etcd_security(config: AgentConfig) -> dict[str, str]:
    """How this node reaches the store, for what it starts that reads it too (the proxy):
    the paths of its certificate files, never their contents."""
    etcd = config.etcd
    out = {"etcd-insecure": "true"} if etcd.insecure else {}
    if etcd.tls is not None:
        out |= {"etcd-ca": etcd.tls.ca, "etcd-cert": etcd.tls.cert, "etcd-key": etcd.tls.key}
    if etcd.username is not None and etcd.password_file is not None:
        out |= {"etcd-username": etcd.username, "etcd-password-file": etcd.password_file}
    return out


class _ApiHandle(Protocol):
    def stop(self) -> None: ...


def _watchdog(config: AgentConfig, state_dir: Path) -> Watchdog | None:
    spec = config.watchdog
    if spec.kind == "process":
        return ensure_process_watchdog(state_dir, config.node, spec.reset)
    if spec.kind == "device":
        return DeviceWatchdog(spec.device, spec.timeout)
    return None


def install_signal_handlers(agent: Agent) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.stop)
    # SIGUSR1: where every thread and every task of the agent is, in its log (to diagnose a
    # node that stopped making progress without the self-check noticing).
    loop.add_signal_handler(signal.SIGUSR1, lambda: log.warning("SIGUSR1:\n%s", task_stacks()))


def task_stacks() -> str:
    """Every thread's stack, then every asyncio task's (where each one awaits)."""
    out = [thread_stacks()]
    for task in asyncio.all_tasks():
        buf = io.StringIO()
        task.print_stack(limit=12, file=buf)
        out.append(f"task {task.get_name()}:\n{buf.getvalue().rstrip()}")
    return "\n".join(out)
