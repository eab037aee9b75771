"""hastack's build: pyproject.toml says everything but this one optional step.

With HASTACK_NATIVE=1 (scripts/setup sets it when a C compiler is there), the proxy's hot path
(`hastack.proxy.native.HOT`: balance, runtime, http, tcp) is compiled to C extensions with
mypyc from its unchanged, typed sources, and the digest of each source is recorded so a build
older than its sources is never used (src/hastack/proxy/native.py). Otherwise, and when the
compilation fails, hastack is pure Python and runs the same code, slower. mypyc type-checks
against the installed dependencies, so the build runs without isolation, in the environment
that has them: `HASTACK_NATIVE=1 pip install --no-build-isolation --no-deps -e .`
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from setuptools import setup

ROOT = Path(__file__).resolve().parent
PROXY = ROOT / "src" / "hastack" / "proxy"


def _native() -> Any:
    spec = importlib.util.spec_from_file_location("_hastack_native", PROXY / "native.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot read {PROXY / 'native.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ext_modules() -> list[Any]:
    if os.environ.get("HASTACK_NATIVE") != "1":
        return []
    from mypyc.build import mypycify  # noqa: PLC0415 (only when compiling: a dev dependency)

    native = _native()
    # Checked with the project's own mypy configuration (strict, pydantic plugin), as in CI.
    modules = mypycify([f"src/hastack/proxy/{name}.py" for name in native.HOT], opt_level="3")
    (PROXY / "_native.json").write_text(json.dumps(native.record(PROXY), indent=1) + "\n")
    return list(modules)


setup(ext_modules=ext_modules())
