"""A flow command handed to the warm process (promo.local.warm): the client half, and the protocol both halves speak.

The `promo` console script calls ``hand_off`` before it imports anything heavy. When the promo home holds the warm
process's socket, the command's arguments, environment and working directory go to it, together with the command's
own stdin, stdout and stderr (passed as file descriptors, SCM_RIGHTS): the forked command reads and writes this
terminal or pipe itself, exactly as if it ran here. Signals that would stop this process are passed on to the
command's process group, and its exit status becomes this process's.

The protocol, one JSON object per line over the Unix socket:

    client -> warm    {"argv", "cwd", "env", "code"}, with fds 0, 1, 2
    warm -> client    {"refused": why}             the client runs the command itself
                    | {"started": pid}
    client -> warm    {"go": true}                 nothing runs before this, so a client that gave up leaves nothing
    warm -> client    {"exit": status}             once the command has finished and flushed its output

Only the standard library here: this runs before the console script has decided to import anything else.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import signal
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from promo.errors import ToolError

SOCKET_NAME = "warm.sock"
STATE_NAME = "warm.state.json"
LOG_NAME = "warm.log"
# The warm process answers at once (a fork, one health request to the local server): a deadline for a stuck one,
# after which the command runs here. Safe, because nothing runs there until the client says "go".
FIRST_ANSWER_SECONDS = 30.0
# Packages whose source, if changed since the warm process started, it would run stale.
SOURCE_PACKAGES = ("promo", "promo.flows", "promo.tasks", "promo.deployments")
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
# A path longer than this does not fit in sockaddr_un (108 bytes on Linux, with its NUL).
_MAX_SOCKET_PATH = 100


def socket_path(root: Path) -> Path:
    """``<root>/warm.sock``; where that is too long for a Unix socket, a private per-user folder under /tmp named by
    a hash of ``root``."""
    path = root / SOCKET_NAME
    if len(os.fsencode(path)) <= _MAX_SOCKET_PATH:
        return path
    private = Path("/tmp") / f"promo-{os.getuid()}"
    private.mkdir(mode=0o700, exist_ok=True)
    owned = private.stat()
    if owned.st_uid != os.getuid() or owned.st_mode & 0o077:
        raise ToolError(f"{private} is not private to this user", "remove it, or set PROMO_HOME to a shorter path")
    return private / f"{hashlib.sha256(os.fsencode(root)).hexdigest()[:24]}.sock"


def code_fingerprint() -> str:
    """What code a process runs: its interpreter, and the path, size and mtime of every source file of promo and of
    Prefect's ``__init__``. A warm process started before an edit, a `pip install` or an upgrade differs from a new
    command's, and must not run it. Stats only (~200 files): a few milliseconds."""
    digest = hashlib.sha256(os.fsencode(sys.executable))
    for root in _source_roots():
        for directory, subdirectories, files in os.walk(root):
            subdirectories[:] = sorted(name for name in subdirectories if name != "__pycache__")
            for name in sorted(files):
                if name.endswith(".py"):
                    digest.update(_stat_line(os.path.join(directory, name)))
    prefect = importlib.util.find_spec("prefect")
    if prefect is not None and prefect.origin:
        digest.update(_stat_line(prefect.origin))
    return digest.hexdigest()


def _source_roots() -> list[str]:
    roots: list[str] = []
    for package in SOURCE_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            roots.extend(spec.submodule_search_locations)
    return roots


def _stat_line(path: str) -> bytes:
    found = os.stat(path)
    return f"{path}:{found.st_size}:{found.st_mtime_ns}\n".encode()


def send(connection: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode() + b"\n"
    if fds:
        socket.send_fds(connection, [data], fds)
    else:
        connection.sendall(data)


def messages(connection: socket.socket) -> Iterator[dict[str, Any]]:
    """The JSON lines the other side sends, until it closes the connection."""
    pending = b""
    while True:
        line, newline, rest = pending.partition(b"\n")
        if newline:
            pending = rest
            yield json.loads(line)
            continue
        chunk = connection.recv(65536)
        if not chunk:
            return
        pending += chunk


def hand_off(argv: list[str], root: Path) -> int | None:
    """Run ``promo <argv>`` in the warm process recorded under ``root``: its exit status, or None when no warm
    process takes it (none runs, it refused, it did not answer in time), in which case the caller runs it itself."""
    path = socket_path(root)
    if not path.exists():
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(FIRST_ANSWER_SECONDS)
        try:
            connection.connect(os.fspath(path))
            request = {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "code": code_fingerprint()}
            send(connection, request, fds=[0, 1, 2])
            replies = messages(connection)
            first = next(replies, {"refused": "it closed the connection"})
        except (OSError, ValueError):  # not listening, a closed stdin/stdout, a stuck process: run it here
            return None
        if "started" not in first:
            return None
        pid = int(first["started"])
        with _signals_passed_to(pid) as passed_on:
            connection.settimeout(None)  # a command may wait at its gate for days
            try:
                send(connection, {"go": True})
                last = next(replies, None)
            except OSError:
                last = None
    if (last is None or "exit" not in last) and passed_on:
        return 128 + passed_on[-1]  # ended by the signal it was given, as a shell reports it
    if last is None or "exit" not in last:
        raise ToolError(
            f"the command's process (pid {pid}) in the warm process ended without an exit status",
            f"read {root / LOG_NAME}; set PROMO_IN_PROCESS=1 to run commands without it",
        )
    return int(last["exit"])


@contextmanager
def _signals_passed_to(pid: int) -> Iterator[list[int]]:
    """Ctrl-C, a kill or a hang-up of this process go to the command's process group (git and its other children
    included); this process then waits for the exit status the command reports. Yields the signals passed on."""
    passed_on: list[int] = []

    def pass_on(number: int, frame: FrameType | None) -> None:
        passed_on.append(number)
        try:
            os.killpg(pid, number)
        except ProcessLookupError:  # it has just finished: its exit status is on its way
            pass

    before = {number: signal.signal(number, pass_on) for number in FORWARDED_SIGNALS}
    try:
        yield passed_on
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)
