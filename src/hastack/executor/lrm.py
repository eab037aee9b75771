"""The local resource manager: this node's side of the executor.

It probes every configured resource once (to adopt what already runs; not those that
resource-discovery keeps this node from looking for), then brings the node
to the target the DC writes, one operation at a time per resource and any number in parallel
across resources, runs recurring monitors, counts failures, and publishes the node's report.
It decides nothing about placement: a failure is reported, and the DC decides the recovery.

This module is the loop: tasks, locks, the monitors' timers, the exclusivity guard,
publishing. What a result does to an instance's report, which step comes next and what an
operation asks of its agent are pure decisions in `hastack.executor.transitions`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from hastack.executor.agents import (
    Driver,
    MetadataCache,
    OcfRc,
    OpRequest,
    OpResult,
    UnknownAgent,
    driver_for,
)
from hastack.executor.assignfile import Assigned, read_assigned, write_assigned
from hastack.executor.attrd import AttributeServer, socket_path, write_shims
from hastack.executor.exclusive import ExclusiveGuard
from hastack.executor.throttle import (
    CpuSample,
    cluster_share,
    cpu_load,
    effective_limit,
    node_limit,
    parse_proc_stat,
    probe_turn,
    ramp_limit,
)
from hastack.executor.transitions import (
    Host,
    MonitorSchedule,
    Placement,
    TargetOp,
    after_cleanup,
    after_monitor,
    after_notify,
    after_operation,
    after_probe,
    cleanup_covers,
    exclusive_name,
    exclusive_promoted,
    is_worth_reporting,
    local_steps,
    monitors_for,
    op_request,
    placements,
    probe_names,
    rule_attributes,
    unprobed,
)
from hastack.model.assign import AssignRole, exclusive_entity
from hastack.model.config import Assignment, ClusterConfig, Op, Role
from hastack.model.members import NodeKind
from hastack.model.state import base_id
from hastack.model.status import NodeReport, PendingOp, ResourceReport
from hastack.model.targets import NodeTarget, NotifyRequest

__all__ = ["ClusterAttributes", "Instance", "LocalResourceManager"]

log = logging.getLogger("hastack.executor")

# Publishing is coalesced: many results within this window make one write, and writes are
# at least this far apart (a burst of 150 results is a handful of writes, not 150).
_PUBLISH_DELAY = 0.01
_PUBLISH_SPACING = 0.05
# How often the node's CPU load is sampled for the throttle.
_LOAD_PERIOD = 1.0
# Operations listed under way lazily (probes of resources added later: a hundred of them on
# each node) are published with the next report, or at most this long after they start or end.
_LAZY_PUBLISH = 2.0
# A burst of probes begins after a random delay up to this long (each node its own), so that
# a hundred nodes given the same configuration do not start their first probes in the same
# instant; one probe at a time at first (hastack.executor.throttle.ramp_limit).
_PROBE_JITTER = 0.5
# How many notification keys a node reports (the DC needs only the current transition's).
_NOTIFIED_KEPT = 256
# After a failed assignment notification, wait this long before trying again.
_ASSIGN_RETRY = 1.0


@dataclass
class Instance:
    """One resource instance on this node: what it is (its report, the value this node
    publishes, replaced by every result) and what running it takes."""

    name: str
    primitive: str
    report: ResourceReport = field(default_factory=ResourceReport)
    busy: bool = False  # an operation for the target (or self-fencing) is under way
    monitor: asyncio.Task[None] | None = field(default=None, repr=False)
    # Held for the duration of every operation: operations on one resource never overlap.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)


class Throttle:
    """At most `limit` operations at once on this node (node-action-limit, lowered while the
    CPU is busier than load-threshold: hastack.executor.throttle)."""

    # While waiting, the limit is looked at again on every change and, if set, this often
    # (a limit that moves with time).
    recheck: float | None = None

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.running = 0
        self.waiting = 0
        self._free = asyncio.Condition()
        # Waiters queue here, first come first served, and only the one at the head waits on
        # `_free` (and looks at the limit again each `recheck`): with every waiter on the
        # condition, each slot released and each recheck woke all of them — 150 probes
        # queued made 11,000 wake-ups, and at 100 computes the agents' own Python took 71 %
        # of the machine after an apply (docs/control-plane.md, section 8, run 11).
        self._queue = asyncio.Lock()

    def allowed(self) -> int:
        return self.limit

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        self.waiting += 1
        try:
            async with self._queue, self._free:
                while self.running >= self.allowed():
                    if self.recheck is None:
                        await self._free.wait()
                        continue
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.recheck):
                            await self._free.wait()
                self.running += 1
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            async with self._free:
                self.running -= 1
                self._free.notify_all()

    async def set_limit(self, limit: int) -> None:
        async with self._free:
            self.limit = max(1, limit)
            self._free.notify_all()


class ProbeRamp(Throttle):
    """The slow start of a burst of probes: at most `ramp_limit` of them at once, the node's
    own limit (`ceiling`) at most, and none outside the node's turn while the load asks nodes
    to take turns (`share`: throttle.probe_turn); looked at again four times a load period."""

    recheck = _LOAD_PERIOD / 4

    def __init__(
        self,
        ceiling: Callable[[], int],
        clock: Callable[[], float],
        node: str,
        share: Callable[[], int],
    ) -> None:
        super().__init__(1)
        self._ceiling = ceiling
        self._clock = clock
        self._began = clock()
        self._node = node
        self._share = share

    def allowed(self) -> int:
        now = self._clock()
        if not probe_turn(self._node, now, _LOAD_PERIOD, self._share()):
            return 0
        return ramp_limit(now - self._began, _LOAD_PERIOD, self._ceiling())


class ClusterAttributes(Protocol):
    """What the executor cannot answer from its own memory: permanent attributes (the
    configuration, changed by CAS) and other nodes' transient ones (their reports)."""

    async def set_permanent(self, node: str, name: str, value: str | None) -> None: ...

    async def transient_of(self, node: str, name: str) -> str | None: ...


# (instance, operation, its result, when it began — wall time)
OperationHook = Callable[[str, str, OpResult, float], None]


class LocalResourceManager:
    def __init__(
        self,
        node: str,
        *,
        state_dir: str,
        netns: str | None = None,
        publish: Callable[[NodeReport], Awaitable[None]],
        ocf_root: str | None = None,
        ocf_dirs: tuple[str, ...] = (),
        guard: ExclusiveGuard | None = None,
        clock: Callable[[], float] = time.time,
        cluster: Mapping[str, str] | None = None,
        kind: NodeKind = NodeKind.FULL,
        node_attributes: Mapping[str, str] | None = None,
        cluster_attributes: ClusterAttributes | None = None,
        on_operation: OperationHook | None = None,
    ) -> None:
        self.node = node
        # Told of every operation of a target (not monitors) once it ended: the agent's
        # event log, where the failover benchmark times the pipeline's steps.
        self._on_operation = on_operation
        # What location rules see of this node besides the configuration: its kind and the
        # attributes of its member record (resource-discovery by rule).
        self.kind = kind
        self.node_attributes = dict(node_attributes or {})
        self._cluster_attributes = cluster_attributes
        self.cluster = dict(cluster or {})
        self.state_dir = state_dir
        self.netns = netns
        self._publish = publish
        self._ocf_root = ocf_root
        self._ocf_dirs = ocf_dirs
        self.guard = guard or ExclusiveGuard(node, None)
        self._clock = clock
        self.instances: dict[str, Instance] = {}
        self.config: ClusterConfig | None = None
        self._placements: dict[str, Placement] = {}
        self._drivers: dict[str, Driver] = {}
        self._metadata_cache = MetadataCache()  # OCF meta-data, once per agent script
        self.target: NodeTarget | None = None
        self.highest_epoch = 0
        self.probed: set[str] = set()
        # Primitives this node does not probe, by resource-discovery, and what that was
        # worked out from (the configuration and the attributes rules read).
        self.unprobed: frozenset[str] = frozenset()
        self._unprobed_from: tuple[ClusterConfig, dict[str, str]] | None = None
        # Transient node attributes set by agents in this life (docs/attributes.md).
        self.attributes: dict[str, str] = {}
        self._attrd: AttributeServer | None = None
        # Clone notifications run (keys, most recent last) and those under way.
        self.notified: list[str] = []
        self._notifying: set[str] = set()
        self._wake = asyncio.Event()
        self._dirty = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        # The probes of the primitives not probed yet, run beside the executor's passes
        # (`_probe_new`); None when none are under way.
        self._probes: asyncio.Task[None] | None = None
        # The report says what runs here only once the agent has said which configuration
        # the cluster holds (`_configured`; None too: a cluster without one) and the node has
        # probed it (`_ready`). Until then it is published as `probing`, with the probes
        # under way and what the node's last report listed (`_previous`): the DC does not
        # count the node online yet (an empty report taken for the truth had it start again,
        # and the node stop, what a restarted agent was about to adopt), and should the node
        # be lost meanwhile, the DC still assumes that what ran there may run there.
        self._configured = False
        self._ready = False
        self._previous: NodeReport | None = None
        self._wake.set()
        self.known_nodes = 0
        self.cores = os.cpu_count() or 1
        self.throttle = Throttle(node_limit(0, self.cores))
        self.load = 0.0
        # Operations under way for the target (and notifications): reported so the DC and
        # `hastack status` see what a node is doing, and for how long it may take.
        self.pending: dict[str, PendingOp] = {}
        self.working = 0  # the revision of the target accepted in this life
        # Work assignment (docs/assign.md): per assignment, what its local instance has
        # confirmed (`told`), a change under way (`telling`: reported with `told` until
        # confirmed), and the file's generation.
        self.told: dict[str, dict[str, AssignRole]] = {}
        self.telling: dict[str, dict[str, AssignRole]] = {}
        self._generations: dict[str, int] = {}
        self._assign_failed_at: dict[str, float] = {}
        self.refused = 0  # the revision of the last target refused (an older DC's)
        self.last_pass = time.monotonic()  # when the loop last ran a pass (self-check)
        self._lazy_pending = False  # the pending list changed and was not published for it
        self._lazy_published = 0.0
        # The revision of each node's latest successful fence, as last seen (None: nothing
        # seen yet); a newer one is told to the instances that hear fencing.
        self._fences: dict[str, int] | None = None

    # ---- inputs -----------------------------------------------------------------------------

    _config_revision = 0

    def set_config(
        self, config: ClusterConfig | None, revision: int = 0, *, known_nodes: int = 0
    ) -> None:
        self.known_nodes = known_nodes
        if not self._configured:
            self._configured = True
            self._wake.set()
            self._dirty.set()  # said at once: probing
        if config is self.config:
            return
        self.config = config
        self._config_revision = revision
        fresh = placements(config) if config else {}
        # A primitive removed from the configuration may still run here: keep the definition
        # it runs with until it is stopped, so that the DC's stop of the orphan runs the
        # agent that can stop it, as Pacemaker's executor stops an orphan by its last known
        # definition. Without it the stop failed "not in the configuration", and a failed
        # stop means fencing: removing resources fenced every node that ran them.
        for name, placement in self._placements.items():
            if name not in fresh and self._active_here(name):
                fresh[name] = placement
        self._placements = fresh
        self._drivers = {k: v for k, v in self._drivers.items() if k in self._placements}
        self._wake.set()

    def set_previous(self, report: NodeReport | None) -> None:
        """The node's report as the store holds it when the agent first reads the store,
        perhaps from an earlier life of the agent: what may run here until this life's
        probes say what does. Taken once, before the configuration (later the store holds
        this life's own reports)."""
        if not self._configured:
            self._previous = report

    def _active_here(self, primitive: str) -> bool:
        """Some instance of the primitive runs here, or may (an operation is under way)."""
        return any(
            i.primitive == primitive and (i.busy or i.report.role is not Role.STOPPED)
            for i in self.instances.values()
        )

    def set_target(
        self, target: NodeTarget | None, *, dc_epoch: int, revision: int = 0
    ) -> str | None:
        """Accept a target unless it comes from an older DC; returns why it was refused."""
        self.highest_epoch = max(self.highest_epoch, dc_epoch)
        if target is None:
            return None
        if target.epoch < self.highest_epoch:
            if self.refused != revision:
                self.refused = revision  # said in the report: the DC must not wait for it
                self._dirty.set()
            return f"target from epoch {target.epoch} refused: epoch {self.highest_epoch} seen"
        if self.config is not None and target.config_revision != self._config_revision:
            if target.config_revision < self._config_revision and revision > self._superseded:
                # Made for a configuration this node has already replaced: nothing of it is
                # done here, and the DC plans for the newest one only once every node has
                # answered for its target. So it is answered for as soon as nothing is under
                # way — else each waits for the other until cluster-delay calls the node
                # failed (docs/control-plane.md, section 2).
                self._superseded = revision
                self._wake.set()
            # The plan was made for another configuration: wait until we have the same one.
            return None
        if self.target is None or target != self.target or revision != self._target_revision:
            self.highest_epoch = max(self.highest_epoch, target.epoch)
            self.target = target
            self._target_revision = revision
            self.working = revision
            self._dirty.set()
            self._wake.set()
        return None

    _target_revision = 0
    _superseded = 0  # the newest target refused for being made for an older configuration
    acked = 0

    def cleanup(self, resource: str) -> bool:
        """Forget failures of `resource` (a primitive, clone or instance) and probe it again."""
        touched = False
        for inst in self.instances.values():
            placement = self._placements.get(inst.primitive)
            if cleanup_covers(resource, inst.name, inst.primitive, placement):
                inst.report = after_cleanup(inst.report)
                self.probed.discard(inst.primitive)
                touched = True
        self._wake.set()
        self._dirty.set()
        return touched

    # ---- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        await self._start_attrd()
        publisher = asyncio.create_task(self._publisher(), name="publish")
        sampler = asyncio.create_task(self._sample_load(), name="load")
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                self.last_pass = time.monotonic()
                try:
                    self._probe_new()
                    if not self._ready and self._configured and not self._probes_owed():
                        self._ready = True
                        self._dirty.set()
                    if self._ready or self._probes is None:
                        self._reconcile()
                except Exception:
                    # A bug must not stop this node's executor for good (the node would run
                    # nothing more and nobody would notice): say so loudly and go on.
                    log.exception("executor pass failed; trying again")
                    await asyncio.sleep(0.5)
                    self._wake.set()
        finally:
            publisher.cancel()
            sampler.cancel()
            pending = [publisher, sampler, *self._tasks]
            pending += [self._probes] if self._probes is not None else []
            pending += [i.monitor for i in self.instances.values() if i.monitor is not None]
            for task in pending:
                task.cancel()
            # Let them end (kill and reap their agent processes) before the loop closes.
            await asyncio.gather(*pending, return_exceptions=True)
            if self._attrd is not None:
                await self._attrd.close()

    # ---- node attributes (docs/attributes.md) -------------------------------------------------

    async def _start_attrd(self) -> None:
        """The socket and the commands OCF agents set attributes with."""
        try:
            path = socket_path(self.state_dir)
            shims = write_shims(Path(self.state_dir) / "bin")
            self._attrd = AttributeServer(path, self)
            await self._attrd.start()
        except OSError as exc:
            log.warning("no crm_attribute for OCF agents: %s", exc)
            return
        self.cluster["attrd-socket"] = path
        self.cluster["shim-dir"] = str(shims)

    def apply_attributes(self, changes: Mapping[str, str | None]) -> None:
        """Set (None: delete) transient attributes of this node; published if anything moved."""
        changed = False
        for name, value in changes.items():
            if value is None:
                changed |= self.attributes.pop(name, None) is not None
            elif self.attributes.get(name) != value:
                self.attributes[name] = value
                changed = True
        if changed:
            self._dirty.set()

    async def update(self, node: str, name: str, value: str | None, lifetime: str) -> None:
        if lifetime == "forever":
            if self._cluster_attributes is None:
                raise ValueError("permanent attributes need the cluster's store")
            await self._cluster_attributes.set_permanent(node, name, value)
            return
        if node != self.node:
            raise ValueError(
                f"transient attributes of {node} are set by {node}'s own agent; this is {self.node}"
            )
        self.apply_attributes({name: value})

    async def query(self, node: str, name: str, lifetime: str) -> str | None:
        if lifetime == "forever":
            for spec in self.config.nodes if self.config is not None else ():
                if spec.node == node:
                    value = spec.attributes.get(name)
                    return None if value is None else str(value)
            return None
        if node == self.node:
            return self.attributes.get(name)
        if self._cluster_attributes is None:
            return None
        return await self._cluster_attributes.transient_of(node, name)

    def announce(self) -> None:
        """Publish the node's report again, changed or not (after the node joins). Nothing
        goes out before the agent has fed the executor from the store (set_previous,
        set_config)."""
        self._dirty.set()

    def stalled_for(self) -> float:
        """Seconds a wake-up has waited for a pass of the loop (0 when none is waiting)."""
        return time.monotonic() - self.last_pass if self._wake.is_set() else 0.0

    async def _publisher(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(_PUBLISH_DELAY)
            self._dirty.clear()
            self._lazy_pending = False  # this report lists what is under way now
            if not self._configured:
                continue  # not even the last report is known yet: nothing to say
            report = self.report()
            try:
                await self._publish(report)
            except Exception as exc:  # the next change publishes again; say why this one did not
                log.warning("could not publish status: %s", exc)
                await asyncio.sleep(0.5)
                self._dirty.set()
            await asyncio.sleep(_PUBLISH_SPACING)

    async def _sample_load(self) -> None:
        """Lower the node's operation limit while its CPU is busier than load-threshold."""
        before: CpuSample | None = None
        while True:
            try:
                with open("/proc/stat") as f:  # noqa: ASYNC230 - a procfs read, microseconds
                    sample = parse_proc_stat(f.read())
            except (OSError, ValueError):
                sample = None
            props = self.config.properties if self.config is not None else None
            base = node_limit(props.node_action_limit if props else 0, self.cores)
            if sample is not None and before is not None:
                self.load = cpu_load(before, sample, self.cores)
            limit = effective_limit(base, self.load, props.load_threshold if props else 80)
            if limit != self.throttle.limit:
                if limit < self.throttle.limit:
                    log.info(
                        "load %.0f%%: at most %d operation(s) at once (of %d)",
                        100 * self.load,
                        limit,
                        base,
                    )
                await self.throttle.set_limit(limit)
            before = sample
            now = time.monotonic()
            if self._lazy_pending and now - self._lazy_published >= _LAZY_PUBLISH:
                self._lazy_pending = False
                self._lazy_published = now
                self._dirty.set()
            await asyncio.sleep(_LOAD_PERIOD)

    def report(self) -> NodeReport:
        if not self._ready:
            # What ran here, by the last report, may run still (and serve what it served);
            # everything else is this life's.
            previous = self._previous
            return NodeReport(
                node=self.node,
                updated=self._clock(),
                resources=dict(previous.resources) if previous else {},
                served=previous.served if previous else {},
                notified=previous.notified if previous else (),
                attributes=dict(self.attributes),
                probed=frozenset(self.probed),
                unprobed=self.unprobed,
                pending=dict(self.pending),
                probing=True,
            )
        return NodeReport(
            node=self.node,
            epoch=self.target.epoch if self.target else 0,
            updated=self._clock(),
            resources={
                k: v.report for k, v in self.instances.items() if is_worth_reporting(v.report)
            },
            attributes=dict(self.attributes),
            probed=frozenset(self.probed),
            unprobed=self.unprobed,
            acked=self.acked,
            notified=tuple(self.notified),
            working=self.working,
            pending=dict(self.pending),
            served=self.served(),
            refused=self.refused,
        )

    def served(self) -> dict[str, dict[str, AssignRole]]:
        """What this node's instances may serve: what they confirmed, and while a change is
        unconfirmed, what it adds (an active copy counts over a standby)."""
        out: dict[str, dict[str, AssignRole]] = {}
        for name in set(self.told) | set(self.telling):
            roles = dict(self.telling.get(name, {}))
            for entity, role in self.told.get(name, {}).items():
                if roles.get(entity) is not AssignRole.ACTIVE:
                    roles[entity] = role
            if roles:
                out[name] = roles
        return out

    def _reconcile(self) -> None:
        if self.config is None:
            return
        steps: list[tuple[str, TargetOp]] = []
        if self.target is not None:
            self._adopt_clone_names(self.target)
            steps = local_steps(
                self.target,
                {name: inst.report for name, inst in self.instances.items()},
                busy={name for name, inst in self.instances.items() if inst.busy},
            )
            for name, op in steps:
                if self._instance_awaits_probe(name):
                    continue  # done once its probe has said what runs (`_probe_new`)
                inst = self.instances.get(name)
                if inst is None:
                    primitive = base_id(name) if base_id(name) in self._placements else name
                    inst = Instance(name, primitive)
                    self.instances[name] = inst
                self._launch(inst, op)
            self._launch_notifications(self.target)
            self._launch_assignments(self.target)
        busy = (
            any(i.busy for i in self.instances.values())
            or bool(self._notifying)
            or bool(self.telling)
            or self._probes_owed()
        )
        done = max(self._target_revision if self.target is not None else 0, self._superseded)
        if not steps and not busy and self.acked != done:
            # Nothing left to do for the target taken (every step is done or has failed),
            # nor for one superseded since: answered for.
            self.acked = done
            self._dirty.set()

    def _adopt_clone_names(self, target: NodeTarget) -> None:
        """An anonymous clone has at most one instance per node: whatever number the DC gives
        it, it is the one running here (probes find it under its primitive's name)."""
        for name in target.resources:
            primitive = base_id(name)
            placement = self._placements.get(primitive)
            if placement is None or not placement.anonymous_clone or name in self.instances:
                continue
            other = next(
                (i for i in self.instances.values() if i.primitive == primitive and not i.busy),
                None,
            )
            if other is not None:
                del self.instances[other.name]
                other.name = name
                self.instances[name] = other

    def _launch(self, inst: Instance, op: TargetOp) -> None:
        inst.busy = True
        task = asyncio.create_task(self._operate(inst, op), name=f"{op} {inst.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- clone notifications ---------------------------------------------------------------

    def _launch_notifications(self, target: NodeTarget) -> None:
        for request in target.notify:
            if request.key in self._notifying or request.key in self.notified:
                continue
            if self._instance_awaits_probe(request.instance):
                continue  # whether it runs here, its probe says first
            inst = self._notify_recipient(request.instance)
            if inst is None:
                # Not running here (any more): there is no one to tell.
                log.info("notify %s: not running here, nothing to do", request.instance)
                self._notified(request.key)
                continue
            self._notifying.add(request.key)
            task = asyncio.create_task(
                self._notify(inst, request), name=f"notify {request.instance}"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _notify_recipient(self, name: str) -> Instance | None:
        inst = self.instances.get(name)
        if inst is None:
            # The DC numbers anonymous clone instances afresh: ours is the one of that primitive.
            primitive = base_id(name)
            inst = next((i for i in self.instances.values() if i.primitive == primitive), None)
        return inst if inst is not None and inst.report.role is not Role.STOPPED else None

    def _notified(self, key: str) -> None:
        self.notified.append(key)
        del self.notified[:-_NOTIFIED_KEPT]
        self._dirty.set()

    async def _notify(self, inst: Instance, request: NotifyRequest) -> None:
        try:
            async with inst.lock:
                result = await self._execute(inst, "notify", extra=request.variables, track=True)
            when = request.variables.get("notify_type", "")
            what = request.variables.get("notify_operation", "")
            inst.report = after_notify(inst.report, result, now=self._clock())
            if result.rc == OcfRc.SUCCESS:
                log.info("notify %s (%s-%s): success", inst.name, when, what)
            else:
                log.warning(
                    "notify %s (%s-%s): %s%s",
                    inst.name,
                    when,
                    what,
                    OcfRc.describe(result.rc),
                    f" ({result.reason})" if result.reason else "",
                )
        finally:
            self._notifying.discard(request.key)
            self._notified(request.key)
            self._wake.set()

    # ---- a peer's fence ------------------------------------------------------------------------

    def peers_fenced(self, fences: Mapping[str, int]) -> None:
        """`fences`: the revision of each node's latest successful fence (the snapshot's
        `fences()`). A fence of a peer newer than the last one seen is told at once to every
        running instance whose agent hears fencing (`Driver.hears_fencing`). The first call
        only learns what is there: an older fence is the monitors' business."""
        if self._fences is None:
            self._fences = dict(fences)
            return
        for node, revision in sorted(fences.items()):
            if revision <= self._fences.get(node, 0):
                continue
            self._fences[node] = revision
            if node == self.node:
                continue
            for inst in list(self.instances.values()):
                if inst.report.role is Role.STOPPED or not self._hears_fencing(inst):
                    continue
                task = asyncio.create_task(
                    self._tell_fenced(inst, node), name=f"peer-fenced {inst.name}"
                )
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def _hears_fencing(self, inst: Instance) -> bool:
        if inst.primitive not in self._placements:
            return False
        try:
            return self._driver(inst.primitive).hears_fencing
        except UnknownAgent:
            return False

    async def _tell_fenced(self, inst: Instance, node: str) -> None:
        # Neither the instance's lock nor the node's throttle: a monitor under way may be
        # stuck on the very peer this is about, until the instance acts on its fence.
        result = await self._execute(
            inst, "peer-fenced", extra={"fenced_node": node}, throttled=False
        )
        log.log(
            logging.INFO if result.rc == OcfRc.SUCCESS else logging.WARNING,
            "peer-fenced %s (%s fenced): %s%s",
            inst.name,
            node,
            OcfRc.describe(result.rc),
            f" ({result.reason})" if result.reason else "",
        )

    # ---- work assignment ----------------------------------------------------------------------

    def _assignment_instance(self, a: Assignment) -> Instance | None:
        """The running instance of the assignment's clone on this node, if any."""
        for inst in self.instances.values():
            placement = self._placements.get(inst.primitive)
            if (
                placement is not None
                and placement.clone is not None
                and placement.clone.id == a.clone
                and inst.report.role is not Role.STOPPED
                and not inst.report.failed
            ):
                return inst
        return None

    @property
    def assign_dir(self) -> Path:
        return Path(self.state_dir) / "assign"

    def _launch_assignments(self, target: NodeTarget) -> None:
        if self.config is None:
            return
        for a in self.config.assignments:
            name = a.assignment
            if name in self.telling:
                continue
            if time.monotonic() - self._assign_failed_at.get(name, -1e9) < 0.9 * _ASSIGN_RETRY:
                continue
            inst = self._assignment_instance(a)
            if inst is not None and self._awaits_probe(inst.primitive):
                continue  # told once its probe has said what runs
            wanted = dict(target.assigned.get(name, {})) if inst is not None else {}
            if wanted == self.told.get(name, {}):
                continue
            if inst is None or inst.busy:
                continue  # nothing runs to tell (a stop clears what it served), or not yet
            self._tell(inst, name, wanted, throttled=True)

    def _tell(
        self, inst: Instance, name: str, wanted: dict[str, AssignRole], *, throttled: bool
    ) -> None:
        self.telling[name] = wanted
        self._dirty.set()

        async def tell() -> None:
            await self._assign(inst, name, wanted, throttled=throttled)

        task = asyncio.create_task(tell(), name=f"assign {name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _write_assigned(self, name: str, wanted: Mapping[str, AssignRole]) -> int:
        generation = self._generations.get(name)
        if generation is None:
            found = read_assigned(self.assign_dir, name)
            generation = found.generation if found is not None else 0
        generation += 1
        self._generations[name] = generation
        write_assigned(
            self.assign_dir,
            Assigned(
                name,
                generation,
                tuple(sorted(e for e, r in wanted.items() if r is AssignRole.ACTIVE)),
                tuple(sorted(e for e, r in wanted.items() if r is AssignRole.STANDBY)),
            ),
        )
        return generation

    async def _assign(
        self, inst: Instance, name: str, wanted: dict[str, AssignRole], *, throttled: bool
    ) -> bool:
        """Write the file, tell the instance, and count the change done once it confirms.
        An entity becoming active here is recorded (and the watchdog armed) before the
        instance hears of it; one released, only after it confirmed."""
        before = self.told.get(name, {})
        active = sorted(e for e, r in wanted.items() if r is AssignRole.ACTIVE)
        released = sorted(
            e
            for e, r in before.items()
            if r is AssignRole.ACTIVE and wanted.get(e) is not AssignRole.ACTIVE
        )
        ok = False
        try:
            async with inst.lock:
                generation = self._write_assigned(name, wanted)
                for entity in active:
                    self.guard.acquire(exclusive_entity(name, entity))
                variables = {
                    "notify_type": "post",
                    "notify_operation": "assign",
                    "notify_assign_name": name,
                    "notify_assign_active": " ".join(active),
                    "notify_assign_standby": " ".join(
                        sorted(e for e, r in wanted.items() if r is AssignRole.STANDBY)
                    ),
                    "notify_assign_released": " ".join(released),
                    "notify_assign_generation": str(generation),
                    "notify_assign_file": str(self.assign_dir / f"{name}.json"),
                }
                result = await self._execute(
                    inst, "notify", extra=variables, throttled=throttled, track=True
                )
            ok = result.rc == OcfRc.SUCCESS
            if ok:
                self.told[name] = dict(wanted)
                for entity in released:
                    self.guard.release(exclusive_entity(name, entity))
                self._assign_failed_at.pop(name, None)
                log.info(
                    "assign %s: %d active, %d standby (generation %d)%s",
                    name,
                    len(active),
                    len(wanted) - len(active),
                    generation,
                    f"; released {' '.join(released)}" if released else "",
                )
            else:
                # Unknown what the instance serves now: report both sets until it confirms.
                merged = dict(wanted)
                for entity, role in before.items():
                    if merged.get(entity) is not AssignRole.ACTIVE:
                        merged[entity] = role
                self.told[name] = merged
                self._assign_failed_at[name] = time.monotonic()
                log.warning(
                    "assign %s: %s%s",
                    name,
                    OcfRc.describe(result.rc),
                    f" ({result.reason})" if result.reason else "",
                )
                asyncio.get_running_loop().call_later(_ASSIGN_RETRY, self._wake.set)
        finally:
            self.telling.pop(name, None)
            self._dirty.set()
            self._wake.set()
        return ok

    def _forget_assignments_of(self, inst: Instance) -> None:
        """After `inst` stopped (or was found stopped): it serves nothing, and the file says
        so, so that a start never serves entities of an earlier grant."""
        if self.config is None:
            return
        placement = self._placements.get(inst.primitive)
        if placement is None or placement.clone is None:
            return
        for a in self.config.assignments:
            if a.clone != placement.clone.id:
                continue
            name = a.assignment
            for entity, role in self.told.pop(name, {}).items():
                if role is AssignRole.ACTIVE:
                    self.guard.release(exclusive_entity(name, entity))
            self._write_assigned(name, {})
            self._dirty.set()

    def _adopt_assignments_of(self, inst: Instance) -> None:
        """A running instance found by a probe (the agent restarted under it): it serves what
        the file says, until told otherwise."""
        if self.config is None:
            return
        placement = self._placements.get(inst.primitive)
        if placement is None or placement.clone is None:
            return
        for a in self.config.assignments:
            if a.clone != placement.clone.id or a.assignment in self.told:
                continue
            found = read_assigned(self.assign_dir, a.assignment)
            if found is None:
                continue
            roles = dict.fromkeys(found.standby, AssignRole.STANDBY)
            roles.update(dict.fromkeys(found.active, AssignRole.ACTIVE))
            if roles:
                self.told[a.assignment] = roles
                for entity in found.active:
                    self.guard.acquire(exclusive_entity(a.assignment, entity))
                self._dirty.set()

    async def release_assignments(self, deadline: float) -> bool:
        """Self-fencing of entities: every instance told to serve nothing, before
        `deadline` (monotonic); an instance that cannot confirm is stopped."""
        if self.config is None:
            return True
        work = []
        for a in self.config.assignments:
            if not any(
                r is AssignRole.ACTIVE for r in self.served().get(a.assignment, {}).values()
            ):
                continue
            inst = self._assignment_instance(a)
            if inst is None:
                inst = next(
                    (
                        i
                        for i in self.instances.values()
                        if (p := self._placements.get(i.primitive)) is not None
                        and p.clone is not None
                        and p.clone.id == a.clone
                    ),
                    None,
                )
            if inst is not None:
                work.append(self._release_or_stop(inst, a.assignment))
        if work:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await asyncio.gather(*work)
        return not any(
            r is AssignRole.ACTIVE for roles in self.served().values() for r in roles.values()
        )

    async def _release_or_stop(self, inst: Instance, name: str) -> None:
        pending = self.telling.get(name)
        if pending is not None:
            # A change is under way: wait for it (it holds the lock), then release.
            async with inst.lock:
                pass
        self.telling[name] = {}
        if await self._assign(inst, name, {}, throttled=False):
            return
        log.warning("self-fencing: %s did not release %s; stopping it", inst.name, name)
        await self._self_fence_one(inst, "stop")

    # ---- operations -------------------------------------------------------------------------

    def _driver(self, primitive: str) -> Driver:
        driver = self._drivers.get(primitive)
        if driver is None:
            placement = self._placements[primitive]
            driver = driver_for(
                placement.primitive.agent,
                ocf_root=self._ocf_root,
                ocf_dirs=self._ocf_dirs,
                metadata_cache=self._metadata_cache,
            )
            self._drivers[primitive] = driver
        return driver

    async def _request(
        self,
        inst: Instance,
        op: str,
        interval: float = 0.0,
        extra: Mapping[str, str] | None = None,
    ) -> tuple[OpRequest, Driver] | OpResult:
        """Everything the agent needs for one operation, with the driver that runs it, or
        the reason it cannot run."""
        placement = self._placements.get(inst.primitive)
        if placement is None or self.config is None:
            return OpResult(OcfRc.ERR_CONFIGURED, f"{inst.primitive} is not in the configuration")
        config = self.config
        try:
            driver = self._driver(inst.primitive)
        except UnknownAgent as exc:
            return OpResult(OcfRc.ERR_INSTALLED, str(exc))
        # The configuration may change while the metadata is read: the request is made from
        # the one this operation started with.
        request = op_request(
            inst.name,
            placement,
            op,
            config=config,
            metadata=await driver.metadata(),
            host=Host(self.node, self.netns, self.state_dir, self.cluster, self.known_nodes),
            interval=interval,
            extra=extra,
        )
        return request if isinstance(request, OpResult) else (request, driver)

    async def _execute(
        self,
        inst: Instance,
        op: str,
        interval: float = 0.0,
        extra: Mapping[str, str] | None = None,
        *,
        throttled: bool = True,
        track: bool = False,
        lazy: bool = False,
    ) -> OpResult:
        """Run one operation. `throttled`: wait for a slot under the node's limit first
        (self-fencing never waits); `track`: list it as pending while it runs — `lazy`: that
        listing goes out with the next report or within _LAZY_PUBLISH, not at once."""
        if not throttled:
            return await self._run_op(inst, op, interval, extra, track, lazy)
        async with self.throttle.slot():
            return await self._run_op(inst, op, interval, extra, track, lazy)

    async def _run_op(
        self,
        inst: Instance,
        op: str,
        interval: float,
        extra: Mapping[str, str] | None,
        track: bool,
        lazy: bool = False,
    ) -> OpResult:
        made = await self._request(inst, op, interval, extra)
        if isinstance(made, OpResult):
            return made
        request, driver = made
        if track:
            self.pending[inst.name] = PendingOp(op, self._clock(), request.timeout)
            self._pending_changed(lazy)
        try:
            # OCF scripts are killed at their timeout by the driver; native agents are
            # cancelled here, with a little slack so the driver's own message wins.
            async with asyncio.timeout(request.timeout + 1.0):
                result = await driver.execute(request)
            if result.attributes:
                self.apply_attributes(result.attributes)
            return result
        except TimeoutError:
            return OpResult(
                OcfRc.ERR_GENERIC, f"timed out after {request.timeout:g}s", request.timeout, True
            )
        finally:
            if track:
                self.pending.pop(inst.name, None)
                self._pending_changed(lazy)

    def _pending_changed(self, lazy: bool) -> None:
        if lazy:
            self._lazy_pending = True  # published by _sample_load's next round at the latest
        else:
            self._dirty.set()

    # ---- exclusivity --------------------------------------------------------------------------

    def exclusive_name(self, inst: Instance) -> str | None:
        """The name under which `inst` is exclusive while started, if it is."""
        return exclusive_name(inst.primitive, self._placements.get(inst.primitive))

    def exclusive_promoted(self, inst: Instance) -> str | None:
        """The name under which `inst`'s promoted role is exclusive, if it is."""
        return exclusive_promoted(self._placements.get(inst.primitive))

    def _guard_before(self, inst: Instance, op: str) -> None:
        name = self.exclusive_name(inst) if op == "start" else None
        if op == "promote":
            name = self.exclusive_promoted(inst)
        if name is not None:
            self.guard.acquire(name)

    def _guard_after(self, inst: Instance, op: str, ok: bool) -> None:
        if not ok:
            return
        if op == "stop":
            for name in (self.exclusive_name(inst), self.exclusive_promoted(inst)):
                if name is not None:
                    self.guard.release(name)
        elif op == "demote":
            name = self.exclusive_promoted(inst)
            if name is not None:
                self.guard.release(name)

    def _guard_probe(self, inst: Instance) -> None:
        name, promoted = self.exclusive_name(inst), self.exclusive_promoted(inst)
        role = inst.report.role
        if role is Role.STOPPED:
            for n in (name, promoted):
                if n is not None:
                    self.guard.release(n)
            return
        if name is not None:
            self.guard.acquire(name)
        if promoted is not None and role is Role.PROMOTED:
            self.guard.acquire(promoted)

    async def release_exclusive(self, deadline: float) -> bool:
        """Self-fencing: stop (or demote) everything exclusive here before `deadline`
        (monotonic). Returns whether nothing exclusive is left running."""
        self.target = None  # no DC's word counts any more until we are a member again
        work = []
        for inst in list(self.instances.values()):
            if inst.report.blocked or inst.report.role is Role.STOPPED:
                continue
            if self.exclusive_name(inst) is not None:
                work.append(self._self_fence_one(inst, "stop"))
            elif inst.report.role is Role.PROMOTED and self.exclusive_promoted(inst) is not None:
                work.append(self._self_fence_one(inst, "demote"))

        async def release_entities() -> None:
            await self.release_assignments(deadline)

        work.append(release_entities())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await asyncio.gather(*work)
        return not self.guard.held

    def _isolation_stop(self, inst: Instance) -> bool:
        placement = self._placements.get(inst.primitive)
        if placement is None or self.exclusive_name(inst) is not None:
            return False
        try:
            driver = self._driver(inst.primitive)
        except UnknownAgent:
            return False
        return driver.stop_when_isolated(placement.primitive.params)

    async def stop_isolated(self) -> list[str]:
        """The node lost its membership: stop what must not outlive an isolation although it
        is not exclusive (`Driver.stop_when_isolated`). The instances stopped."""
        work, names = [], []
        if any(self._isolation_stop(inst) for inst in self.instances.values()):
            self.target = None  # as in self-fencing: no DC's word counts until we rejoin
        for inst in list(self.instances.values()):
            if inst.report.blocked or inst.report.role is Role.STOPPED:
                continue
            if self._isolation_stop(inst):
                work.append(self._self_fence_one(inst, "stop"))
                names.append(inst.name)
        if work:
            await asyncio.gather(*work)
        return names

    async def _self_fence_one(self, inst: Instance, op: TargetOp) -> None:
        # A running operation ends first (it is bounded by its own timeout).
        async with inst.lock:
            await self._self_fence_locked(inst, op)

    async def _self_fence_locked(self, inst: Instance, op: TargetOp) -> None:
        inst.busy = True
        try:
            result = await self._execute(inst, op, throttled=False)
            self._record(inst, op, result)
            self._guard_after(inst, op, result.rc == OcfRc.SUCCESS)
            if op == "stop" and result.rc == OcfRc.SUCCESS:
                self._forget_assignments_of(inst)
            log.warning("self-fencing: %s %s: %s", op, inst.name, OcfRc.describe(result.rc))
        finally:
            inst.busy = False
            self._dirty.set()
            self._update_monitor(inst)

    async def _operate(self, inst: Instance, op: TargetOp) -> None:
        async with inst.lock:
            await self._operate_locked(inst, op)

    async def _operate_locked(self, inst: Instance, op: TargetOp) -> None:
        try:
            self._guard_before(inst, op)
            if op == "start":
                self._forget_assignments_of(inst)  # a start serves nothing until told
            began = time.time()
            result = await self._execute(inst, op, track=True)
            self._record(inst, op, result)
            if self._on_operation is not None:
                self._on_operation(inst.name, op, result, began)
            self._guard_after(inst, op, result.rc == OcfRc.SUCCESS)
            if op == "stop" and result.rc == OcfRc.SUCCESS:
                self._forget_assignments_of(inst)
            log.info(
                "%s %s: %s%s",
                op,
                inst.name,
                OcfRc.describe(result.rc),
                f" ({result.reason})" if result.reason else "",
            )
        finally:
            inst.busy = False
            self._dirty.set()
            self._wake.set()
            self._update_monitor(inst)

    def _record(self, inst: Instance, op: TargetOp, result: OpResult) -> None:
        placement = self._placements.get(inst.primitive)
        inst.report = after_operation(
            inst.report,
            op,
            result,
            now=self._clock(),
            promotable=placement is not None and placement.promotable,
            start_failure_is_fatal=self.config is None
            or self.config.properties.start_failure_is_fatal,
        )

    # ---- probes -----------------------------------------------------------------------------

    def _probe_new(self) -> None:
        """Start probing every configured primitive not probed yet (at start, and when some
        are added), but those resource-discovery keeps this node from looking for.

        The probes run in a task of their own, beside the executor's passes: a burst of a
        thousand lasted 20 s at 100 computes, and awaited inside the pass it held back every
        target meanwhile (a stop or a start of another resource waited for the burst's end)
        and got the node's executor called stalled (docs/control-plane.md, section 5). While
        it runs, a pass acts on everything but what awaits its probe (`_awaits_probe`): no
        operation races a probe of its resource, and nothing is started here that a probe
        has not yet said is stopped. Primitives added meanwhile are probed by the next
        burst, started as this one ends."""
        if self.config is None:
            return
        self._update_unprobed(self.config)
        if self._probes is not None:
            return
        todo = [p for p in self._placements if self._awaits_probe(p)]
        if not todo:
            return
        self._probes = asyncio.create_task(self._probe_all(todo), name="probes")
        self._probes.add_done_callback(self._probes_done)

    def _probes_done(self, task: asyncio.Task[None]) -> None:
        self._probes = None
        self._dirty.set()
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            # A bug must not leave primitives unprobed for good: said, and tried again.
            log.error("probing failed; trying again", exc_info=error)
            asyncio.get_running_loop().call_later(0.5, self._wake.set)
            return
        self._wake.set()  # a pass for what they found, and any primitive added meanwhile

    def _awaits_probe(self, primitive: str) -> bool:
        """Is `primitive` configured to be probed here and not probed (again) yet?"""
        return (
            primitive in self._placements
            and primitive not in self.probed
            and primitive not in self.unprobed
        )

    def _probes_owed(self) -> bool:
        """Are probes under way, or primitives waiting for theirs?"""
        return self._probes is not None or any(self._awaits_probe(p) for p in self._placements)

    def _instance_awaits_probe(self, name: str) -> bool:
        """Does the instance `name` (of a configured primitive) await its primitive's probe?"""
        inst = self.instances.get(name)
        primitive = inst.primitive if inst is not None else base_id(name)
        if primitive not in self._placements:
            primitive = name
        return self._awaits_probe(primitive)

    async def _probe_all(self, todo: list[str]) -> None:
        config = self.config
        if config is None:
            return  # the configuration went before the burst began
        if len(todo) == 1:
            await self._probe(todo[0])
            return
        await asyncio.sleep(random.uniform(0, _PROBE_JITTER))
        props = config.properties
        ramp = ProbeRamp(
            lambda: self.throttle.limit,
            time.monotonic,
            self.node,
            lambda: cluster_share(self.load, props.load_threshold),
        )

        async def ramped(primitive: str) -> None:
            async with ramp.slot():
                await self._probe(primitive)

        await asyncio.gather(*(ramped(p) for p in todo))

    def _update_unprobed(self, config: ClusterConfig) -> None:
        """Work out again what this node does not probe when the configuration or the
        attributes its rules read have changed; a change is published."""
        reported = {**self.node_attributes, **self.attributes}
        if self._unprobed_from is not None:
            seen_config, seen_attributes = self._unprobed_from
            if seen_config is config and seen_attributes == reported:
                return
        self._unprobed_from = (config, reported)
        attributes = rule_attributes(config, self.node, self.kind, reported)
        found = frozenset(unprobed(config, self.node, attributes))
        if found != self.unprobed:
            if found:
                log.info(
                    "not probing %d resource(s) here (resource-discovery): %s",
                    len(found),
                    ", ".join(sorted(found)),
                )
            self.unprobed = found
            self._dirty.set()

    async def _probe(self, primitive: str) -> None:
        placement = self._placements.get(primitive)
        if placement is None or self.config is None:
            return  # no longer configured since the burst began
        for name in probe_names(placement, self.config, self.known_nodes):
            inst = self.instances.get(name) or next(
                (
                    i
                    for i in self.instances.values()
                    if i.primitive == primitive and placement.anonymous_clone
                ),
                None,
            )
            if inst is not None and inst.busy:
                continue
            if inst is None:
                inst = Instance(name, primitive)
            # Probes are reported under way: the DC waits for them, and for as long as their
            # timeouts say — those of resources added later too. Untracked, a node probing a
            # hundred new resources one at a time (its CPU saturated, the throttle at one
            # operation) reported nothing under way, and after cluster-delay the DC gave up
            # on it as failed and fenced it (bench/scale.py --fencing at 100 computes). The
            # later ones lazily: a report published at each of their starts and ends cost the
            # starved computes more CPU than the probes (nothing started in 420 s).
            result = await self._execute(inst, "probe", track=True, lazy=self._ready)
            inst.report = after_probe(
                inst.report, result, now=self._clock(), promotable=placement.promotable
            )
            self._guard_probe(inst)
            if inst.report.role is Role.STOPPED:
                self._forget_assignments_of(inst)
            else:
                self._adopt_assignments_of(inst)
            report = inst.report
            if report.role is not Role.STOPPED or report.failed or report.fail_count:
                self.instances[inst.name] = inst
            else:
                self.instances.pop(inst.name, None)
            self._update_monitor(inst)
        self.probed.add(primitive)

    # ---- monitors ---------------------------------------------------------------------------

    def _monitors_for(self, inst: Instance) -> list[Op]:
        placement = self._placements.get(inst.primitive)
        return [] if placement is None else monitors_for(placement.primitive, inst.report.role)

    def _update_monitor(self, inst: Instance) -> None:
        if inst.monitor is not None:
            inst.monitor.cancel()
            inst.monitor = None
        ops = self._monitors_for(inst)
        if ops and not inst.report.blocked and self.instances.get(inst.name) is inst:
            inst.monitor = asyncio.create_task(
                self._monitor_loop(inst, ops), name=f"monitor {inst.name}"
            )

    async def _monitor_loop(self, inst: Instance, ops: list[Op]) -> None:
        schedule = MonitorSchedule.starting(
            [op.interval for op in ops], time.monotonic(), spread=random.uniform(0.5, 1.0)
        )
        while True:
            index, due = schedule.next()
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            schedule = schedule.ran(index, time.monotonic())
            if inst.busy or inst.lock.locked():
                continue
            op = ops[index]
            # A monitor holds the resource's lock but is not target work: it neither blocks
            # a step (the step waits for the lock) nor delays the acknowledgement.
            async with inst.lock:
                result = await self._execute(inst, "monitor", op.interval)
            failed = after_monitor(
                inst.report, result, now=self._clock(), interval=op.interval, on_fail=op.on_fail
            )
            if failed is None:
                continue
            why = failed.last_op.reason if failed.last_op else ""
            log.warning("monitor %s: %s (%s)", inst.name, OcfRc.describe(result.rc), why)
            inst.report = failed
            self._dirty.set()
            self._wake.set()
            return  # the DC decides the recovery; monitoring resumes after it
