"""Import rules, checked statically on the sources:

* the functional core imports nothing that does I/O: model/, scheduler/, quorum arithmetic, the
  DC's decisions (controller.py), the operations layer's configuration edits, the executor's
  transitions and throttling arithmetic, the Galera chooser and parsers (galera/), the
  evacuation's decisions (compute/evacuation.py), the checkers, and the work-assignment
  decisions (assign/);
* the product does not import the lab (`hastack.lab`: local clusters, the netns lab, their
  power switch), except the command-line front ends of the lab's own commands;
* nothing outside the lab imports what only the lab needs (the `lab` extra in pyproject.toml).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).parent.parent
SRC = ROOT / "src" / "hastack"

PURE = [
    SRC / "model",
    SRC / "scheduler",
    SRC / "membership" / "quorum.py",
    SRC / "controller.py",
    SRC / "ops" / "edits.py",
    SRC / "executor" / "throttle.py",
    SRC / "executor" / "transitions.py",
    SRC / "galera",
    SRC / "rabbitmq",
    SRC / "checkers",
    SRC / "assign",
    SRC / "compute" / "evacuation.py",
]

# Modules that do I/O, or that reach the network, disk, clock or processes.
FORBIDDEN = {
    "asyncio", "socket", "subprocess", "os", "shutil", "time", "random", "grpc", "aetcd",
    "pathlib", "signal", "threading", "multiprocessing", "urllib", "http", "requests",
    "pyroute2", "select", "selectors", "ssl", "tempfile", "io", "logging",
    "hastack.store", "hastack.agent", "hastack.lab", "hastack.cli", "hastack.executor",
    "hastack.membership.lease", "hastack.membership.election", "hastack.store.snapshot",
    "hastack.proxy", "hastack.fencing", "hastack.eventlog", "hastack.ops.cluster",
    "hastack.ops.configure", "hastack.ops.requests", "hastack.ops.status",
    "hastack.ops.simulate", "hastack.ops.resources", "hastack.ops.nodes", "hastack.ops.rabbitmq",
    "novaclient", "keystoneauth1",
    "hastack.compute.evacuator", "hastack.compute.nova", "hastack.compute.fence_step",
}  # fmt: skip

# The `hastack cluster`, `hastack lab` and `hastack demo` commands are the lab's front end in
# the one `hastack` command (and `hastack status` finds a local cluster's client.yaml by
# default). Nothing else outside lab/ may import the lab.
LAB_FRONT_ENDS = {"cli/main.py", "cli/cluster_cmd.py", "cli/lab_cmd.py", "cli/client.py"}

# The import names of the `lab` extra's distributions.
IMPORT_NAMES = {
    "aio-pika": "aio_pika",
    "matplotlib": "matplotlib",
    "oslo.messaging": "oslo_messaging",
    "oslo.cache": "oslo_cache",
    "dogpile.cache": "dogpile",
    "pymemcache": "pymemcache",
    "tooz": "tooz",
    "etcd3gw": "etcd3gw",
}


def _files() -> list[Path]:
    out: list[Path] = []
    for root in PURE:
        if root.is_file():
            out.append(root)
        elif root.is_dir():
            out.extend(sorted(root.rglob("*.py")))
    return out


def _package(path: Path) -> str:
    """The package a source file belongs to (what its relative imports start from)."""
    return ".".join(path.relative_to(SRC.parent).parent.parts)


def _imports(source: str, package: str = "") -> list[str]:
    """Every module the source imports, anywhere in it (relative imports resolved)."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                names.append(node.module or "")
                continue
            parts = package.split(".")
            base = parts[: len(parts) - node.level + 1]
            names.append(".".join([*base, *([node.module] if node.module else [])]))
    return names


def _imports_of(path: Path) -> list[str]:
    return _imports(path.read_text(), _package(path))


def _is(name: str, module: str) -> bool:
    return name == module or name.startswith(module + ".")


def _lab_extra() -> set[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extra = pyproject["project"]["optional-dependencies"]["lab"]
    dists = {req.split(">")[0].split("=")[0].split("<")[0].split("[")[0].strip() for req in extra}
    assert dists <= IMPORT_NAMES.keys(), f"name the import of {dists - IMPORT_NAMES.keys()}"
    return {IMPORT_NAMES[d] for d in dists}


def _lab_offenders(imports: dict[str, list[str]], lab_only: set[str]) -> list[str]:
    """`imports`: file (relative to src/hastack) -> the modules it imports."""
    offenders = []
    for rel, names in imports.items():
        if rel.startswith("lab/"):
            continue
        for name in names:
            if _is(name, "hastack.lab") and rel not in LAB_FRONT_ENDS:
                offenders.append(f"{rel} imports the lab ({name})")
            if any(_is(name, m) for m in lab_only):
                offenders.append(f"{rel} imports {name}, which only the lab extra installs")
    return offenders


def test_pure_modules_import_no_io() -> None:
    files = _files()
    assert any(f.parent.name == "model" for f in files), "the rule must cover model/"
    offenders = []
    for path in files:
        for name in _imports_of(path):
            if any(_is(name, f) for f in FORBIDDEN):
                offenders.append(f"{path.relative_to(SRC)} imports {name}")
    assert offenders == []


def test_the_product_does_not_import_the_lab_or_its_extra() -> None:
    lab_only = _lab_extra()
    assert lab_only == {
        "aio_pika", "matplotlib", "oslo_messaging", "oslo_cache", "dogpile", "pymemcache",
        "tooz", "etcd3gw",
    }  # fmt: skip
    assert all((SRC / f).exists() for f in LAB_FRONT_ENDS), "a front end moved: update the list"
    imports = {p.relative_to(SRC).as_posix(): _imports_of(p) for p in sorted(SRC.rglob("*.py"))}
    assert _lab_offenders(imports, lab_only) == []


def test_the_product_runs_without_the_lab_extra() -> None:
    """The `hastack` command and the agent start with aio-pika and matplotlib missing."""
    code = (
        "import sys\n"
        "sys.modules.update({m: None for m in ('aio_pika', 'matplotlib', 'oslo_messaging',"
        " 'oslo_cache', 'oslo_config', 'dogpile', 'pymemcache', 'tooz', 'etcd3gw')})\n"
        "import hastack.cli.main, hastack.agent, hastack.lab.scenario, hastack.lab.workloads\n"
        "import hastack.lab.net.demo_api\n"
        "sys.exit(hastack.cli.main.main(['--help']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()


def test_the_checker_catches_a_violation() -> None:
    assert _imports("import os\nfrom hastack.store import Store\n") == ["os", "hastack.store"]


def test_the_lab_rule_catches_a_violation() -> None:
    imports = {
        "fencing/watchdog.py": _imports(
            "def reset() -> None:\n    from hastack.lab.power import power_off\n",
            "hastack.fencing",
        ),
        "executor/lrm.py": _imports(
            "from ..lab import power\nimport matplotlib.pyplot\n", "hastack.executor"
        ),
        "cli/lab_cmd.py": _imports("from hastack.lab.net import Lab\n", "hastack.cli"),
        "lab/plot.py": _imports("import matplotlib\n", "hastack.lab"),
    }
    assert _lab_offenders(imports, {"matplotlib"}) == [
        "fencing/watchdog.py imports the lab (hastack.lab.power)",
        "executor/lrm.py imports the lab (hastack.lab)",
        "executor/lrm.py imports matplotlib.pyplot, which only the lab extra installs",
    ]


# What the daemon of every node does not load unless a resource needs it: the proxy and its
# libraries, netlink (VIPs), the lab, the CIB importer (docs/control-plane.md, "Lighter
# agents"). A hundred compute agents on one lab machine pay for each of these.
# Nor, until it is DC (a compute never is), the DC's controller, scheduler passes,
# assignment decisions and fencing service (docs/compute.md, "A lighter compute agent").
AGENT_LOADS_LATER = (
    "hastack.proxy", "uvloop", "httptools", "aiomysql", "prometheus_client", "pyroute2",
    "hastack.lab", "hastack.cib", "hastack.ops",
    "hastack.controller", "hastack.assign", "hastack.fencing.service", "hastack.compute",
    "hastack.scheduler.actions", "hastack.scheduler.tree", "hastack.scheduler.assign",
)  # fmt: skip


def _loaded_after(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint('\\n'.join(sys.modules))\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return set(done.stdout.decode().split())


def test_the_agent_command_loads_only_what_an_agent_needs() -> None:
    loaded = _loaded_after(
        "from hastack.cli.main import build_parser\n"
        "args = build_parser('agent').parse_args(['agent', '--config', 'agent.yaml'])\n"
        "assert args.func.__module__ == 'hastack.cli.agent_cmd'"
    )
    assert "hastack.agent" in loaded
    assert sorted(m for m in loaded if any(_is(m, x) for x in AGENT_LOADS_LATER)) == []


def test_the_lab_boot_and_the_process_watchdog_stay_small() -> None:
    """Every lab process starts through `hastack.lab.net.boot`; every node runs a process
    watchdog: neither loads the lab, netlink or an event loop."""
    boot = _loaded_after("import hastack.lab.net.boot")
    assert not {"hastack.lab.net.lab", "pyroute2", "pydantic"} & boot
    watchdog = _loaded_after("import hastack.fencing.watchdog")
    assert not {"asyncio", "pydantic", "grpc"} & watchdog


def test_every_command_is_registered_by_the_module_named_for_it() -> None:
    import argparse
    import importlib

    from hastack.cli.main import COMMANDS, build_parser

    for module in set(COMMANDS.values()):
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module).register(sub)
        assert set(sub.choices) == {c for c, m in COMMANDS.items() if m == module}, module
    full = build_parser()._subparsers
    assert full is not None
    names = set(full._group_actions[0].choices)  # type: ignore[attr-defined]
    assert names == {*COMMANDS, "demo"}


def test_native_agents_are_found_by_their_names() -> None:
    from hastack.executor.agents import NATIVE

    assert sorted(NATIVE) == [
        "evacuator",
        "galera",
        "haproxy",
        "memcached",
        "ping",
        "proxy",
        "rabbitmq",
        "service",
        "vip",
    ]
    assert all(cls.name == name for name, cls in NATIVE.items())
