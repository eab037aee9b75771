"""`hastack lab ...`: a multi-host cluster in network namespaces on this machine, faults to
inject into it, scenarios to run against it, and the demo. Needs root; without it, the
loopback cluster (`hastack cluster up`) is the way to try hastack."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from hastack.cli.timing_options import add_timing_options, timings_from_args
from hastack.errors import HastackError
from hastack.lab.demo_lab import run_lab_demo
from hastack.lab.net.lab import (
    ETCD_DATA,
    FAST_ELECTION_MS,
    FAST_TIMINGS,
    REMOTE_TIMINGS,
    Lab,
    LabError,
    default_dir,
)
from hastack.lab.net.lab import require_root as _require_root
from hastack.lab.scenario import load_scenario, run_scenario
from hastack.model.agent_config import Timings

__all__ = ["register"]


def _dir(args: argparse.Namespace) -> Path:
    return Path(args.dir) if args.dir else default_dir()


def _load(args: argparse.Namespace) -> Lab:
    _require_root()
    return Lab.load(_dir(args))


def cmd_up(args: argparse.Namespace) -> int:
    timings = timings_from_args(args)
    lab = Lab.up(
        _dir(args),
        nodes=args.nodes,
        computes=args.computes,
        links_count=args.links,
        timings=timings,
        election_ms=args.election_ms,
        replace=args.replace,
        on_progress=print,
        insecure=args.insecure,
        remote_timings=_compute_timings(args),
        etcd_data=args.etcd_data,
    )
    print(f"lab up in {_dir(args)} (hastack lab status; hastack lab down)")
    print()
    print(_render(lab))
    return 0


def _compute_timings(args: argparse.Namespace) -> Timings | None:
    """--compute-timings: 'same' (the controllers'), or TTL,RENEW,TIMEOUT, checked as the
    controllers' timings are (their safety inequality, an etcd leader change)."""
    text = args.compute_timings.strip()
    if text == "same":
        return None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 3:
        raise HastackError(
            f"--compute-timings: give 'same' or LEASE-TTL,RENEW-INTERVAL,STORE-TIMEOUT "
            f"(e.g. 10s,2s,2.5s), not {text!r}"
        )
    ns = argparse.Namespace(
        lease_ttl=parts[0], renew_interval=parts[1], store_timeout=parts[2],
        election_ms=args.election_ms,
    )  # fmt: skip
    try:
        return timings_from_args(ns)
    except HastackError as exc:
        raise HastackError(f"--compute-timings {text}: {exc}") from None


def cmd_down(args: argparse.Namespace) -> int:
    lab = _load(args)
    removed = lab.down(keep_logs=args.keep_logs)
    print(f"lab {lab.topology.prefix} removed: {len(removed)} object(s)")
    for item in removed:
        print(f"  {item}")
    left = lab.leftovers()
    if left:
        print("still present (remove by hand): " + ", ".join(left))
        return 1
    return 0


def _render(lab: Lab) -> str:
    t = lab.topology
    out = [
        f"Lab {t.prefix}: hub namespace {t.hub}, networks "
        + ", ".join(f"link {k} {n}" for k, n in enumerate(t.networks())),
        f"  VIP address free for use: {t.net_prefix(0)}.100",
        "",
        f"  {'host':<8}{'role':<12}{'namespace':<16}{'address':<16}{'state':<10}processes",
    ]
    paused = set(lab.state.get("paused", []))
    for h in lab.hosts():
        procs = []
        for what in ("etcd", "agent"):
            if lab.record(h.name, what) is not None:
                procs.append(f"{what} {'up' if lab.alive(h.name, what) else 'DOWN'}")
        state = "crashed" if not lab.powered(h.name) else "paused" if h.name in paused else "up"
        cut = lab.state["hosts"].get(h.name, {}).get("links_down", [])
        if cut:
            state += f" (link {','.join(map(str, cut))} down)"
        out.append(
            f"  {h.name:<8}{h.role.value:<12}{h.namespace:<16}{h.address:<16}{state:<10}"
            + ", ".join(procs)
        )
    faults = lab.faults()
    if faults.partition:
        out.append("  partition: " + " | ".join(",".join(g) for g in faults.partition))
    for host, pct in faults.loss:
        out.append(f"  loss: {pct}% of packets to and from {host}")
    for host, d in sorted(lab.delays().items()):
        jitter = f" ± {d['jitter']:g}" if d.get("jitter") else ""
        out.append(f"  delay: {d['delay']:g}{jitter} ms each way to and from {host}")
    return "\n".join(out)


def cmd_status(args: argparse.Namespace) -> int:
    lab = _load(args)
    if args.json:
        print(json.dumps({"lab": lab.state, "cluster": json.loads(lab.status())}, indent=2))
        return 0
    print(_render(lab))
    print()
    try:
        print(lab.status(text=True).rstrip())
    except LabError as exc:
        print(f"cluster status unavailable: {exc}")
        return 1
    return 0


def cmd_fault(args: argparse.Namespace) -> int:
    lab = _load(args)
    op = args.fault
    if op == "crash":
        pids = lab.crash(args.node)
        print(f"{args.node} crashed: interfaces down, {len(pids)} process(es) killed (SIGKILL)")
    elif op == "start":
        print(f"{args.node}: " + (", ".join(lab.start(args.node)) or "already running"))
    elif op == "kill":
        pids = lab.kill(args.node, args.process)
        print(f"{args.node} {args.process}: " + (f"killed pid {pids}" if pids else "not running"))
    elif op in ("pause", "resume"):
        pids = getattr(lab, op)(args.node)
        print(f"{args.node}: {len(pids)} process(es) {'paused' if op == 'pause' else 'resumed'}")
    elif op == "partition":
        groups = lab.partition(args.groups)
        print(
            "partitioned: " + " | ".join(",".join(g) for g in groups) + " (heal: hastack lab heal)"
        )
    elif op == "heal":
        lab.heal()
        print("healed: every host reaches every other")
    elif op == "netem":
        if args.loss is None and args.delay is None:
            raise LabError("give --loss PCT and/or --delay MS (0 clears either)")
        if args.loss is not None:
            lab.netem(args.node, args.loss)
            print(
                f"{args.node}: {args.loss}% loss to and from it"
                if args.loss
                else f"{args.node}: loss cleared"
            )
        if args.delay is not None:
            lab.delay(args.node, args.delay, args.jitter)
            jitter = f" ± {args.jitter:g}" if args.jitter else ""
            print(
                f"{args.node}: {args.delay:g}{jitter} ms delay each way to and from it"
                if args.delay
                else f"{args.node}: delay cleared"
            )
    elif op in ("link-down", "link-up"):
        lab.link(args.node, args.link, up=op == "link-up")
        print(f"{args.node} link {args.link} {'up' if op == 'link-up' else 'down'}")
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    lab = _load(args)
    host = lab.host(args.node)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise LabError("give a command: hastack lab exec n1 -- ip addr")
    argv = ["ip", "netns", "exec", host.namespace, "unshare", "--uts", "--",
            sys.executable, "-m", "hastack.lab.net.boot", host.name, *command]  # fmt: skip
    return subprocess.run(argv, check=False).returncode


def cmd_run(args: argparse.Namespace) -> int:
    _require_root()
    scenario = load_scenario(Path(args.scenario))
    lab = Lab.load(_dir(args)) if args.on_lab else None
    result = run_scenario(scenario, Path(args.results), lab=lab)
    return 0 if result.valid else 1


def cmd_demo(args: argparse.Namespace) -> int:
    return run_lab_demo(keep_results=not args.no_results)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "lab",
        help="a multi-host cluster in network namespaces: up, faults, scenarios, demo (root)",
        description="Each host is a network namespace with its own hostname, cabled to "
        "bridges in a hub namespace; controllers run an etcd member and an agent, computes a "
        "remote agent, and a client host carries workloads. Everything stays on this machine "
        "(the lab's networks are blackholed in the root namespace). Needs root; otherwise use "
        "`hastack cluster up` (loopback, no privileges).",
    )
    parser.add_argument("--dir", help=f"lab directory (default {default_dir()})")
    lab_sub = parser.add_subparsers(dest="lab_command", metavar="ACTION", required=True)

    up = lab_sub.add_parser("up", help="build the lab and start etcd and agents")
    up.add_argument("--nodes", type=int, default=3, help="controllers (etcd + agent), 1-9")
    up.add_argument("--computes", type=int, default=0, help="compute hosts (remote agents)")
    up.add_argument("--links", type=int, default=1, choices=(1, 2), help="networks per host")
    up.add_argument("--replace", action="store_true", help="tear down a lab already up in --dir")
    up.add_argument(
        "--insecure",
        action="store_true",
        help="etcd in plaintext, without certificates (default: mutual TLS, a CA per lab)",
    )
    add_timing_options(up, FAST_TIMINGS, FAST_ELECTION_MS)
    rt = REMOTE_TIMINGS
    up.add_argument(
        "--compute-timings",
        default=f"{rt.lease_ttl:g}s,{rt.renew_interval:g}s,{rt.store_timeout:g}s",
        metavar="TTL,RENEW,TIMEOUT",
        help="the compute (remote) agents' lease TTL, renew interval and store timeout "
        f"(default {rt.lease_ttl:g}s,{rt.renew_interval:g}s,{rt.store_timeout:g}s; 'same': "
        "the controllers' timings)",
    )
    up.add_argument(
        "--etcd-data",
        choices=ETCD_DATA,
        default="memory",
        help="where the etcd members keep their data: memory (tmpfs, the default: a lab "
        "crash keeps the page cache, so fdatasync protects nothing here and only stalls) "
        "or disk (the lab directory)",
    )
    up.set_defaults(func=cmd_up)

    down = lab_sub.add_parser("down", help="remove everything the lab made")
    down.add_argument("--keep-logs", action="store_true")
    down.set_defaults(func=cmd_down)

    status = lab_sub.add_parser("status", help="hosts, processes, faults, cluster status")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    def fault(name: str, help_: str) -> argparse.ArgumentParser:
        p = lab_sub.add_parser(name, help=help_)
        p.set_defaults(func=cmd_fault, fault=name)
        return p

    fault("crash", "power loss: interfaces down, SIGKILL every process of the host").add_argument(
        "node"
    )
    fault("start", "boot a crashed host / start its missing processes").add_argument("node")
    kill = fault("kill", "SIGKILL one process: agent, etcd, or a service instance")
    kill.add_argument("node")
    kill.add_argument("process")
    fault("pause", "SIGSTOP every process of the host").add_argument("node")
    fault("resume", "SIGCONT every process of the host").add_argument("node")
    part = fault("partition", "cut groups from each other: 'n1 | n2,n3' (silent drops)")
    part.add_argument("groups")
    fault("heal", "remove the partition")
    netem = fault("netem", "packet loss and delay to and from a host")
    netem.add_argument("node")
    netem.add_argument("--loss", type=int, metavar="PCT", help="percent dropped; 0 clears")
    netem.add_argument(
        "--delay", type=float, metavar="MS", help="milliseconds added each way; 0 clears"
    )
    netem.add_argument("--jitter", type=float, default=0.0, metavar="MS", help="± around --delay")
    for name, what in (("link-down", "cut"), ("link-up", "mend")):
        p = fault(name, f"{what} the cable of one link of a host")
        p.add_argument("node")
        p.add_argument("link", type=int, nargs="?", default=0)

    ex = lab_sub.add_parser("exec", help="run a command as a lab host: hastack lab exec n1 -- ip a")
    ex.add_argument("node")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    ex.set_defaults(func=cmd_exec)

    run = lab_sub.add_parser("run", help="run a scenario (YAML) and its checkers")
    run.add_argument("scenario")
    run.add_argument("--results", default=str(Path.home() / ".hastack" / "results"))
    run.add_argument("--on-lab", action="store_true", help="use the lab up in --dir")
    run.set_defaults(func=cmd_run)

    demo = lab_sub.add_parser("demo", help="the main job on the lab: crash the VIP holder")
    demo.add_argument("--no-results", action="store_true", help="remove the run's records too")
    demo.set_defaults(func=cmd_demo)
