"""The warm process: Prefect and every flow imported once, each flow command forked from it.

A `promo` flow command spends ~1.5 s importing Prefect and its flow before a flow that itself takes a fraction of a
second (docs/performance.md). `promo server start` therefore also starts this process beside the local server. It
imports all of that once and listens on a Unix socket in the server's folder (mode 0600; only this user's processes
are served). For each command the console script hands it (promo.local.handoff) it checks that the command may run
here, forks, and the child becomes the command: the client's stdin, stdout and stderr, working directory, environment
and arguments, in a process group of its own, running ``promo.cli.main.main`` as a fresh process would.

It refuses, and the client then runs the command itself, when:
- the code or Prefect's profiles file changed since it started (an edit, a `pip install`, `prefect config set`): it
  re-executes itself with them, same PID;
- the command's Prefect settings could differ from those Prefect loaded here at import: other ``PREFECT_*``
  variables or HOME, or a prefect.toml, .env or ``[tool.prefect]`` table in the command's working directory;
- the local server does not answer (the command's own start then says so).

Forking is safe because nothing here starts a thread: imports only, no Prefect client, no logging set-up; a check at
start refuses to serve otherwise.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import shlex
import signal
import socket
import struct
import sys
import threading
import traceback
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import httpx

from promo.local.handoff import FIRST_ANSWER_SECONDS, LOG_NAME, code_fingerprint, messages, send, socket_path
from promo.local.prefect_server import QUICK_HEALTH_SECONDS, WarmProcess, read_launch_file

# What flow commands import: loaded once here rather than by each command. fastapi.encoders is Prefect's parameter
# serialiser, imported at a flow's first call.
PRELOADED = (
    "promo.cli.main",
    "promo.cli.ops",
    "promo.flows.publish_dev",
    "promo.flows.promote",
    "promo.flows.release_prod",
    "promo.flows.rollback",
    "promo.flows.hotfix",
    "promo.flows.bump_version",
    "promo.flows.demo",
    "prefect.flow_engine",
    "prefect.task_engine",
    "prefect.logging.configuration",
    "fastapi.encoders",
)
# A request is one line of JSON: a client that sends less within this is dropped, so the loop is never held.
REQUEST_SECONDS = 10.0
CODE_CHANGED = "the code or Prefect's profiles changed since the warm process started"
_PEER_CREDENTIALS = struct.Struct("3i")  # pid, uid, gid


class Loaded(NamedTuple):
    """What this process loaded at start, which a command's must match."""

    code: str  # promo.local.handoff.code_fingerprint()
    profiles: str  # _profiles_stamp()


def serve(config_path: Path) -> None:
    """Import, then answer commands until SIGTERM."""
    launched = read_launch_file(config_path)
    listen_at = Path(launched[0])
    os.chdir(config_path.parent)  # no prefect.toml or .env of the starting directory in this process's settings
    for module in PRELOADED:
        importlib.import_module(module)
    if threading.active_count() > 1:
        raise SystemExit(f"not serving: importing started threads ({threading.enumerate()}); forking them is unsafe")
    loaded = Loaded(code_fingerprint(), _profiles_stamp())
    owner = os.getpid()
    listener = _listen(listen_at)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps finished commands
    signal.signal(signal.SIGTERM, _exit_on_signal)
    print(f"warm process {owner} serving on {listen_at}", flush=True)
    try:
        while True:
            connection, _ = listener.accept()
            with connection:
                try:
                    _answer(connection, listener, loaded, config_path)
                except Exception:  # noqa: BLE001 - one malformed request must not stop the service for the rest
                    traceback.print_exc()
    finally:
        if os.getpid() == owner:  # a forked command leaves through here too, and must not take the socket with it
            listener.close()
            listen_at.unlink(missing_ok=True)


def _listen(path: Path) -> socket.socket:
    path.unlink(missing_ok=True)  # left by a killed warm process: `promo server start` holds the start lock
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    before = os.umask(0o177)
    try:
        listener.bind(os.fspath(path))
    finally:
        os.umask(before)
    listener.listen(16)
    return listener


def _exit_on_signal(number: int, frame: object) -> NoReturn:
    raise SystemExit(0)


def _answer(connection: socket.socket, listener: socket.socket, loaded: Loaded, config_path: Path) -> None:
    connection.settimeout(REQUEST_SECONDS)
    try:
        peer = _PEER_CREDENTIALS.unpack(
            connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEER_CREDENTIALS.size)
        )
        if peer[1] != os.getuid():
            return
        request, fds = _receive(connection)
    except (OSError, ValueError):
        return
    try:
        if "ping" in request:
            send(connection, {"pong": loaded.code})
            return
        command = f"promo {shlex.join(request['argv'])}"
        refusal = _refusal(request, fds, loaded)
        if refusal is None:
            pid = os.fork()
            if pid == 0:
                _become_command(connection, listener, request, fds, config_path.parent / LOG_NAME)
            print(f"command {pid}: {command} (in {request['cwd']})", flush=True)
            return
        send(connection, {"refused": refusal})
        print(f"refused {command}: {refusal}", flush=True)
    finally:
        for fd in fds:  # the client's: kept open here, its reader would never see the end of its output
            os.close(fd)
    if refusal == CODE_CHANGED:
        _restart(listener, config_path)


def _receive(connection: socket.socket) -> tuple[dict[str, Any], list[int]]:
    data, fds, _, _ = socket.recv_fds(connection, 65536, 3)
    try:
        for fd in fds:
            os.set_inheritable(fd, False)  # never into a re-executed warm process, nor a command's own children
        while not data.endswith(b"\n"):
            chunk = connection.recv(65536)
            if not chunk:
                break
            data += chunk
        return json.loads(data), fds
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def _refusal(request: dict[str, Any], fds: list[int], loaded: Loaded) -> str | None:
    """Why this process must not run the request's command, or None."""
    if request.get("code") != loaded.code or _profiles_stamp() != loaded.profiles:
        return CODE_CHANGED
    if len(fds) != 3:
        return "a command comes with its stdin, stdout and stderr"
    env = request["env"]
    if _settings_view(env) != _settings_view(dict(os.environ)):
        return "the command's Prefect settings differ from the warm process's"
    if _settings_files(Path(request["cwd"])):
        return "the working directory holds Prefect settings"
    if not _server_answers():
        return "the local Prefect server does not answer"
    return None


def _profiles_stamp() -> str:
    """Prefect reads its profiles file at import too: a change (`prefect config set`) counts as a change of code."""
    from prefect.settings import get_current_settings

    try:
        found = get_current_settings().profiles_path.stat()
    except OSError:
        return "no profiles"
    return f"{found.st_size}:{found.st_mtime_ns}"


def _settings_view(env: dict[str, str]) -> dict[str, str]:
    """What Prefect's settings are loaded from, among environment variables; a command without PREFECT_API_URL
    would use the local server, which is this process's."""
    view = {key: value for key, value in env.items() if key.startswith("PREFECT_")}
    view.setdefault("PREFECT_API_URL", os.environ["PREFECT_API_URL"])
    view["HOME"] = env.get("HOME", "")
    return view


def _settings_files(directory: Path) -> bool:
    """Prefect also reads prefect.toml, .env and pyproject.toml's [tool.prefect] from the working directory."""
    try:
        if (directory / "prefect.toml").exists():
            return True
        dotenv = directory / ".env"
        if dotenv.is_file() and "PREFECT_" in dotenv.read_text(errors="replace"):
            return True
        pyproject = directory / "pyproject.toml"
        return pyproject.is_file() and "[tool.prefect" in pyproject.read_text(errors="replace")
    except OSError:
        return True  # unreadable: the command itself will find out what it can read


def _server_answers() -> bool:
    try:
        url = f"{os.environ['PREFECT_API_URL']}/health"
        return httpx.get(url, timeout=QUICK_HEALTH_SECONDS).status_code == 200
    except httpx.HTTPError:
        return False


def _restart(listener: socket.socket, config_path: Path) -> NoReturn:
    """The same PID (so the state file still names it) with the code now installed."""
    listener.close()
    socket_path(config_path.parent).unlink(missing_ok=True)
    print("the code changed: restarting", flush=True)
    os.execv(sys.executable, [sys.executable, "-m", WarmProcess.launcher, os.fspath(config_path)])


def _become_command(
    connection: socket.socket, listener: socket.socket, request: dict[str, Any], fds: list[int], log_path: Path
) -> NoReturn:
    """In the forked child: take on the client's process state, run the CLI, report its exit status, then let
    Prefect flush its logs and events as any exiting process does (the client has returned by then)."""
    status = 1
    finished = threading.Event()
    try:
        listener.close()
        for number in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(number, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.setpgid(0, 0)  # the client passes its signals to this group: git and other children included
        for standard, fd in zip((0, 1, 2), fds):
            os.dup2(fd, standard)
        os.chdir(request["cwd"])
        api_url = os.environ["PREFECT_API_URL"]
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ.setdefault("PREFECT_API_URL", api_url)
        _reopen_standard_streams()
        sys.argv = ["promo", *request["argv"]]
        send(connection, {"started": os.getpid()})
        connection.settimeout(FIRST_ANSWER_SECONDS)
        if next(messages(connection), {}).get("go") is not True:
            os._exit(0)  # the client gave up before anything ran
        connection.settimeout(None)
        threading.Thread(target=_stop_if_client_leaves, args=(connection, finished), daemon=True).start()
        status = _run_cli()
    except BaseException:  # noqa: BLE001 - whatever happens, the client gets an exit status
        traceback.print_exc()
    finally:
        finished.set()
        _report(connection, status, log_path)
    raise SystemExit(status)


def _stop_if_client_leaves(connection: socket.socket, finished: threading.Event) -> None:
    """The client sends nothing after "go": its end closing before the command has finished means it was killed
    (a cancelled CI job's SIGKILL, a closed terminal). The command ends with it, as it would have in its process."""
    try:
        connection.recv(1)
    except OSError:
        pass
    if not finished.is_set():
        os.killpg(0, signal.SIGTERM)


def _reopen_standard_streams() -> None:
    """Python's standard streams as a new process would open them on these descriptors (line-buffered on a
    terminal), so output, colours and prompts behave as in a command started by hand."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    encoding = sys.stdout.encoding or "utf-8"
    sys.stdin = open(0, encoding=encoding, closefd=False)  # noqa: SIM115 - the process's own stdin, never closed
    sys.stdout = io.TextIOWrapper(
        io.FileIO(1, "w", closefd=False), encoding=encoding, line_buffering=os.isatty(1), write_through=False
    )
    sys.stderr = io.TextIOWrapper(
        io.FileIO(2, "w", closefd=False), encoding=encoding, errors="backslashreplace", line_buffering=True
    )


def _run_cli() -> int:
    from promo.cli.main import main

    try:
        main()
    except SystemExit as exit:
        if exit.code is None or isinstance(exit.code, int):
            return exit.code or 0
        print(exit.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _report(connection: socket.socket, status: int, log_path: Path) -> None:
    """The exit status to the client, after the output it belongs to; what the command prints later (Prefect's
    shutdown) goes to the warm process's log, not to a terminal that has moved on."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        pass
    try:
        send(connection, {"exit": status})
    except OSError:
        pass
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    print(f"command {os.getpid()}: exit status {status}", flush=True)


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
