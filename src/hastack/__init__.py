"""hastack: high availability for OpenStack-style control planes."""

# Written so that an older Python still runs this far (no `from __future__ import
# annotations`, no annotation syntax) and says plainly what is wrong, instead of failing with
# a SyntaxError deep inside the package.
import sys

__version__ = "0.1.0"

REQUIRED_PYTHON = (3, 11)


def python_problem(version=None):
    # type: (tuple[int, ...] | None) -> str | None
    """The message for a Python too old to run hastack, or None."""
    found = tuple(version if version is not None else sys.version_info[:3])
    if found[:2] >= REQUIRED_PYTHON:
        return None
    return (
        "hastack needs Python {} or newer; this is Python {} ({}). Install python3.11 "
        "(Debian 12: apt-get install python3) and run hastack with it."
    ).format(".".join(map(str, REQUIRED_PYTHON)), ".".join(map(str, found)), sys.executable)


_problem = python_problem()
if _problem is not None:
    raise SystemExit(_problem)
