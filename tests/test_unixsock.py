"""A state directory's socket path fits AF_UNIX's limit whatever the directory (pure)."""

from __future__ import annotations

from pathlib import Path

from hastack.unixsock import SUN_PATH_MAX, socket_path_for


def test_a_short_state_directory_keeps_its_socket_inside() -> None:
    assert socket_path_for("/var/lib/hastack", "watchdog") == Path("/var/lib/hastack/watchdog.sock")


def test_a_deep_state_directory_gets_a_short_stable_path() -> None:
    deep = Path("/tmp/pytest-of-root/pytest-123") / ("x" * 120) / "n1" / "agent"
    path = socket_path_for(deep, "watchdog")
    assert len(str(path).encode()) <= SUN_PATH_MAX
    assert path.name.startswith("hastack-watchdog-")
    assert socket_path_for(deep, "watchdog") == path  # every process finds the same one
    assert socket_path_for(deep, "attrd") != path
    assert socket_path_for(deep.parent / "n2" / "agent", "watchdog") != path
