"""`hastack token new|list`: operator tokens for the REST API (docs/api.md §3)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hastack.auth import Role, add_token, parse_tokens

__all__ = ["register"]


def cmd_new(args: argparse.Namespace) -> int:
    path = Path(args.file)
    role = Role.READ if args.read_only else Role.WRITE
    token = add_token(path, args.name, role)
    print(token)
    print(
        f"# {args.name} ({role.value}) added to {path}; the token is shown only now. "
        "Copy the file to every node that serves the API."
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    path = Path(args.file)
    entries = parse_tokens(path.read_text(), str(path)) if path.exists() else []
    for entry in entries:
        print(f"{entry.name}\t{entry.role.value}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "token",
        help="make or list operator tokens for the REST API and dashboard",
        description="Operator tokens for the API (Authorization: Bearer TOKEN). The tokens "
        "file keeps only each token's SHA-256 digest; agents read it again when it changes.",
    )
    tsub = parser.add_subparsers(dest="token_command", required=True, metavar="COMMAND")
    new = tsub.add_parser("new", help="make a token, print it once, add its digest to FILE")
    new.add_argument("name", metavar="NAME", help="who the token is for (shown in the history)")
    new.add_argument("--file", required=True, metavar="FILE", help="the tokens file (api.tokens)")
    new.add_argument("--read-only", action="store_true", help="a token that may only read")
    new.set_defaults(func=cmd_new)
    show = tsub.add_parser("list", help="the names and roles in FILE")
    show.add_argument("--file", required=True, metavar="FILE")
    show.set_defaults(func=cmd_list)
