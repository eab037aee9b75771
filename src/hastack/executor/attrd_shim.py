"""`crm_attribute`, `crm_master` and `attrd_updater` for OCF agents run by hastack.

The OCF driver puts a directory of tiny scripts first on an agent's PATH; each runs this
file (by path, with the agent's interpreter: standard library only, no hastack imports) as
`attrd_shim.py TOOL ARGS...`. It parses Pacemaker's flags into one request, sends it to the
node's agent over the Unix socket named by HASTACK_ATTRD_SOCKET, and prints the answer as
the real command would. docs/attributes.md lists what is supported.

`parse(tool, argv, env)` is pure and tested on its own.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

__all__ = [
    "EXIT_NOSUCH",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "TOOLS",
    "ShimRequest",
    "UsageError",
    "format_answer",
    "main",
    "parse",
]

TOOLS = ("crm_attribute", "crm_master", "attrd_updater")

# Pacemaker's exit codes (crm_exit_t) for what these commands can meet.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 64
EXIT_UNAVAILABLE = 69
EXIT_NOSUCH = 105

# How long a command waits for the agent: a set is one in-memory change (transient) or one
# CAS on the configuration (permanent, a few store round trips).
_TIMEOUT = 10.0


class UsageError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ShimRequest:
    tool: str
    command: str  # query, update, delete
    name: str
    node: str
    lifetime: str  # reboot, forever
    value: str | None = None
    quiet: bool = False
    default: str | None = None

    def to_json(self) -> dict[str, object]:
        return asdict(self)


# Each option: (short, long, takes a value). An optional value (crm_attribute -p) is marked
# with "?".
_OPTIONS: dict[str, list[tuple[str, str, str]]] = {
    "crm_attribute": [
        ("N", "node", "1"),
        ("n", "name", "1"),
        ("v", "update", "1"),
        ("", "attr-value", "1"),
        ("D", "delete", ""),
        ("G", "query", ""),
        ("q", "quiet", ""),
        ("Q", "quiet", ""),
        ("l", "lifetime", "1"),
        ("t", "type", "1"),
        ("d", "default", "1"),
        ("p", "promotion", "?"),
        ("U", "uname", "1"),
        ("V", "verbose", ""),
    ],
    "crm_master": [
        ("N", "node", "1"),
        ("U", "uname", "1"),
        ("v", "value", "1"),
        ("D", "delete", ""),
        ("G", "query", ""),
        ("q", "quiet", ""),
        ("Q", "quiet", ""),
        ("l", "lifetime", "1"),
        ("r", "resource", "1"),
        ("V", "verbose", ""),
    ],
    "attrd_updater": [
        ("N", "node", "1"),
        ("n", "name", "1"),
        ("U", "update", "1"),
        ("v", "update", "1"),
        ("D", "delete", ""),
        ("Q", "query", ""),
        ("q", "quiet", ""),
        ("l", "lifetime", "1"),
        ("d", "delay", "1"),
        ("p", "private", ""),
        ("V", "verbose", ""),
    ],
}


def _options(tool: str, argv: Sequence[str]) -> list[tuple[str, str | None]]:
    """getopt-style: `-n X`, `-nX`, `--name X`, `--name=X`, bundled flags `-Dq`."""
    table = _OPTIONS[tool]
    shorts = {s: (long, arg) for s, long, arg in table if s}
    longs = {long: arg for _, long, arg in table}
    out: list[tuple[str, str | None]] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg[2:].partition("=")
            if name not in longs:
                raise UsageError(f"unknown option --{name}")
            kind = longs[name]
            if kind == "1" and not eq:
                if i >= len(args):
                    raise UsageError(f"--{name} needs a value")
                value, i = args[i], i + 1
            elif kind == "" and eq:
                raise UsageError(f"--{name} takes no value")
            out.append((name, value if (eq or kind == "1") else None))
        elif arg.startswith("-") and len(arg) > 1:
            j = 1
            while j < len(arg):
                letter = arg[j]
                if letter not in shorts:
                    raise UsageError(f"unknown option -{letter}")
                long, kind = shorts[letter]
                rest = arg[j + 1 :]
                if kind == "1":
                    if rest:
                        value = rest
                    elif i < len(args):
                        value, i = args[i], i + 1
                    else:
                        raise UsageError(f"-{letter} needs a value")
                    out.append((long, value))
                    break
                if kind == "?":
                    out.append((long, rest or None))
                    break
                out.append((long, None))
                j += 1
        else:
            raise UsageError(f"unexpected argument {arg!r}")
    return out


def _instance(env: Mapping[str, str], given: str | None) -> str:
    name = given or env.get("OCF_RESOURCE_INSTANCE", "")
    if not name:
        raise UsageError("no resource: give one, or run inside an agent (OCF_RESOURCE_INSTANCE)")
    return name


def parse(tool: str, argv: Sequence[str], env: Mapping[str, str]) -> ShimRequest:
    """One request from a command line, as the real command reads it; UsageError if not."""
    if tool not in TOOLS:
        raise UsageError(f"unknown tool {tool!r}")
    command = "query"
    commands: set[str] = set()
    name: str | None = None
    node = env.get("HASTACK_NODE", "")
    lifetime: str | None = None
    value: str | None = None
    quiet = False
    default: str | None = None
    promotion: str | None = None
    promotion_asked = False
    resource: str | None = None
    for option, arg in _options(tool, argv):
        if option in ("node", "uname"):
            node = arg or ""
        elif option == "name":
            name = arg
        elif option in ("update", "attr-value", "value"):
            commands.add("update")
            value = arg
        elif option == "delete":
            commands.add("delete")
        elif option == "query":
            commands.add("query")
        elif option == "quiet":
            quiet = True
        elif option == "lifetime":
            lifetime = arg
        elif option == "type":
            if arg not in ("status", "nodes"):
                raise UsageError(f"-t {arg}: hastack supports node attributes only (status, nodes)")
            lifetime = "reboot" if arg == "status" else "forever"
        elif option == "default":
            default = arg
        elif option == "promotion":
            promotion_asked = True
            promotion = arg
        elif option == "resource":
            resource = arg
        # verbose, delay, private: accepted, nothing to do
    if len(commands) > 1:
        raise UsageError("give one of query, update and delete")
    if commands:
        (command,) = commands
    if tool == "crm_master":
        if name is not None:
            raise UsageError("crm_master sets the promotion score; it takes no name")
        name = f"master-{_instance(env, resource)}"
        lifetime = lifetime or "reboot"
    elif promotion_asked:
        if name is not None:
            raise UsageError("-p names the attribute itself (master-RSC); give no -n")
        name = f"master-{_instance(env, promotion)}"
        lifetime = lifetime or "reboot"
    elif tool == "attrd_updater":
        lifetime = "reboot"  # attrd_updater only ever sets transient attributes
    else:
        lifetime = lifetime or "forever"
    if lifetime not in ("reboot", "forever"):
        raise UsageError(f"lifetime must be reboot or forever, not {lifetime!r}")
    if not name:
        raise UsageError("no attribute name (-n NAME)")
    if not node:
        raise UsageError("no node: give -N NODE (HASTACK_NODE is not set)")
    if command == "update" and value is None:
        raise UsageError("an update needs a value")
    return ShimRequest(tool, command, name, node, lifetime, value, quiet, default)


def format_answer(request: ShimRequest, value: str | None) -> tuple[int, str]:
    """The exit code and standard output of a query's answer (None: no such attribute)."""
    if value is None:
        value = request.default
        if value is None:
            return EXIT_NOSUCH, ""
    if request.quiet:
        return EXIT_OK, value + "\n"
    if request.tool == "attrd_updater":
        return EXIT_OK, f'name="{request.name}" host="{request.node}" value="{value}"\n'
    scope = "status" if request.lifetime == "reboot" else "nodes"
    return EXIT_OK, f"scope={scope}  name={request.name} value={value}\n"


def _ask(path: str, request: ShimRequest) -> dict[str, object]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(_TIMEOUT)
        sock.connect(path)
        sock.sendall(json.dumps(request.to_json()).encode() + b"\n")
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    answer = json.loads(data.decode() or "null")
    if not isinstance(answer, dict):
        raise ValueError("no answer")
    return answer


def main(argv: Sequence[str]) -> int:
    if not argv or argv[0] not in TOOLS:
        print(f"usage: attrd_shim.py {{{','.join(TOOLS)}}} OPTIONS", file=sys.stderr)
        return EXIT_USAGE
    tool = argv[0]
    try:
        request = parse(tool, argv[1:], os.environ)
    except UsageError as exc:
        print(f"{tool}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    path = os.environ.get("HASTACK_ATTRD_SOCKET", "")
    if not path:
        print(
            f"{tool}: HASTACK_ATTRD_SOCKET is not set (not run by a hastack agent)", file=sys.stderr
        )
        return EXIT_UNAVAILABLE
    try:
        answer = _ask(path, request)
    except (OSError, ValueError) as exc:
        print(f"{tool}: cannot reach the hastack agent at {path}: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if not answer.get("ok"):
        print(f"{tool}: {answer.get('error', 'refused')}", file=sys.stderr)
        return EXIT_ERROR
    if request.command != "query":
        return EXIT_OK
    raw = answer.get("value")
    code, out = format_answer(request, raw if isinstance(raw, str) else None)
    if code == EXIT_NOSUCH and not request.quiet:
        print(f"{tool}: attribute {request.name} of {request.node} does not exist", file=sys.stderr)
    sys.stdout.write(out)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
