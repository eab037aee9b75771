"""A state directory's socket path fits AF_UNIX's limit whatever the directory (pure)."""

from __future__ import annotations

import socket
from pathlib import Path

from hastack.unixsock import SUN_PATH_MAX, remove_fallbacks, socket_path_for


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


def test_the_fallback_a_killed_process_left_is_removed_with_its_directory(tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 120) / "n1" / "agent"
    path = socket_path_for(deep, "attrd")
    assert path.parent == Path("/tmp")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))  # closed without an unlink, as by SIGKILL
    assert path.is_socket()
    assert remove_fallbacks(deep) == [path]
    assert not path.exists()
    assert remove_fallbacks(deep) == []  # nothing left: nothing to remove

    short = tmp_path / "s"
    short.mkdir()
    inside = socket_path_for(short, "attrd")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(inside))
    assert remove_fallbacks(short) == []  # inside the directory: removed with it, not here
    assert inside.is_socket()
