"""`hastack token new NAME [--read-only] --file FILE | list --file FILE`: operator tokens
for the write APIs (the proxy's admin endpoint, the REST API). docs/security.md §4."""

from __future__ import annotations

import argparse
from pathlib import Path

from hastack.auth import Role, TokenFile, Tokens, add_token

__all__ = ["register"]


def cmd_new(args: argparse.Namespace) -> int:
    role = Role.READ if args.read_only else Role.WRITE
    token = add_token(Path(args.file), args.name, role)
    print(token)
    print(
        f"# {args.name} ({role.value}) added to {args.file}; this token is shown only now "
        "and stored nowhere else (the file keeps its SHA-256)"
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    path = Path(args.file)
    tokens = TokenFile(path).current() if path.exists() else Tokens()
    for entry in tokens.entries:
        print(f"{entry.operator.name}\t{entry.operator.role.value}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "token",
        help="operator tokens for the write APIs (proxy admin commands, REST API)",
        description="Operator tokens: `Authorization: Bearer TOKEN` on the proxy's admin "
        "endpoint and the REST API. The tokens file keeps NAME ROLE sha256:HEX per line; it is "
        "read again when it changes, so remove a line to revoke a token.",
    )
    tsub = parser.add_subparsers(dest="token_command", required=True, metavar="COMMAND")
    new = tsub.add_parser("new", help="make a token for NAME, append it to the tokens file")
    new.add_argument("name", metavar="NAME", help="the operator (letters, digits, - _ .)")
    new.add_argument("--file", required=True, metavar="FILE", help="the tokens file")
    new.add_argument("--read-only", action="store_true", help="may read, never write")
    new.set_defaults(func=cmd_new)
    show = tsub.add_parser("list", help="the names and roles in FILE (never a token)")
    show.add_argument("--file", required=True, metavar="FILE", help="the tokens file")
    show.set_defaults(func=cmd_list)
