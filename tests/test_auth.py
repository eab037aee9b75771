"""Operator tokens (hastack.auth): what the write APIs accept and refuse."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hastack.auth import (
    Forbidden,
    Operator,
    Role,
    TokenFile,
    Unauthorized,
    add_token,
    authorize,
    parse_tokens,
)
from hastack.errors import ConfigError, HastackError


def test_tokens_file_keeps_digests_only(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    alice = add_token(path, "alice", Role.WRITE)
    bob = add_token(path, "bob", Role.READ)
    text = path.read_text()
    assert alice.startswith("hst_")
    assert alice not in text
    assert bob not in text
    assert os.stat(path).st_mode & 0o777 == 0o600
    tokens = TokenFile(path)
    assert authorize(tokens, f"Bearer {alice}", need=Role.WRITE) == Operator("alice", Role.WRITE)
    assert authorize(tokens, f"bearer {bob}", need=Role.READ) == Operator("bob", Role.READ)
    with pytest.raises(Forbidden, match="bob may only read"):
        authorize(tokens, f"Bearer {bob}", need=Role.WRITE)
    with pytest.raises(HastackError, match="already has a token"):
        add_token(path, "alice", Role.READ)


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Bearer ", "Basic YWxpY2U6eA==", "Bearer hst_guess"]
)
def test_missing_or_unknown_credentials_are_unauthorized(
    tmp_path: Path, header: str | None
) -> None:
    add_token(tmp_path / "tokens", "alice", Role.WRITE)
    tokens = TokenFile(tmp_path / "tokens")
    with pytest.raises(Unauthorized):
        authorize(tokens, header, need=Role.WRITE)
    with pytest.raises(Unauthorized):
        authorize(tokens, header, need=Role.READ)


def test_open_reads_and_no_tokens_configured(tmp_path: Path) -> None:
    assert authorize(None, None, need=Role.READ, open_reads=True) is None
    with pytest.raises(Unauthorized, match="no tokens are configured"):
        authorize(None, "Bearer hst_x", need=Role.WRITE, open_reads=True)
    with pytest.raises(Unauthorized):
        authorize(None, None, need=Role.READ)


def test_bad_lines_are_named() -> None:
    text = (
        "# operators\n"
        "alice write sha256:" + "ab" * 32 + "\n"
        "bob admin sha256:" + "ab" * 32 + "\n"
        "carol write md5:abc\n"
        "alice read sha256:" + "cd" * 32 + "\n"
        "dave write\n"
    )
    with pytest.raises(ConfigError) as caught:
        parse_tokens(text, "tokens")
    assert caught.value.problems == [
        "tokens:3: role must be read or write, not 'admin'",
        "tokens:4: want sha256: and 64 hex digits",
        "tokens:5: alice is given twice",
        "tokens:6: want NAME ROLE sha256:HEX, got 2 field(s)",
    ]


def test_changes_are_read_again_and_a_broken_file_keeps_the_last_good(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    alice = add_token(path, "alice", Role.WRITE)
    tokens = TokenFile(path)
    bob = add_token(path, "bob", Role.WRITE)  # added while running: accepted without restart
    assert authorize(tokens, f"Bearer {bob}", need=Role.WRITE).name == "bob"  # type: ignore[union-attr]
    good = path.read_text()
    path.write_text(good + "broken line\n")
    assert authorize(tokens, f"Bearer {alice}", need=Role.WRITE) is not None
    # revoking: alice's line removed
    path.write_text("".join(line + "\n" for line in good.splitlines() if "alice" not in line))
    with pytest.raises(Unauthorized):
        authorize(tokens, f"Bearer {alice}", need=Role.WRITE)
    with pytest.raises(ConfigError, match="cannot read"):
        TokenFile(tmp_path / "missing")


def test_token_new_command(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    result = subprocess.run(
        [sys.executable, "-m", "hastack", "token", "new", "ops", "--file", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.splitlines()[0]
    assert authorize(TokenFile(path), f"Bearer {token}", need=Role.WRITE) == Operator(
        "ops", Role.WRITE
    )


def test_proxy_check_reads_the_tokens_file(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("alice superuser sha256:" + "ab" * 32 + "\n")
    config = tmp_path / "proxy.yaml"
    config.write_text(
        f"admin: {{bind: 127.0.0.1:18404, tokens: {tokens}}}\n"
        "frontends: [{name: f, bind: [127.0.0.1:18080], backend: b}]\n"
        "backends: [{name: b, servers: [{name: s, address: 127.0.0.1:1}]}]\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "hastack", "proxy", "check", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert f"{tokens}:1: role must be read or write, not 'superuser'" in result.stderr
    everywhere = config.read_text().replace("127.0.0.1:18404", "0.0.0.0:18404")
    config.write_text(everywhere)
    result = subprocess.run(
        [sys.executable, "-m", "hastack", "proxy", "check", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "admin.bind: 0.0.0.0:18404: the admin endpoint binds one address" in result.stderr
