"""Local server processes for tests and sandboxes: started detached, found again by a state file, stopped by PID.

Each server is a process with its own log file, started in its own session so it outlives the command that started
it. It is only ever stopped by the PID it was started with: a JSON state file lets another process (``promo sandbox
--stop``) stop it later, after checking through ``/proc`` that the PID still runs this server's command line and
not a recycled process's.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import ClassVar, Self, TypeVar

import httpx
from pydantic import BaseModel

from promo.errors import ToolError

Server = TypeVar("Server", bound="LocalServer")
M = TypeVar("M", bound=BaseModel)

# Generous: two cores shared by several test runs can take seconds to start a Python process.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0


@dataclass(frozen=True)
class LocalServer:
    """A server process on 127.0.0.1 that keeps its config and log under ``root``; subclasses say how it starts."""

    pid: int
    port: int
    root: Path

    program: ClassVar[str]  # how errors name it
    config_name: ClassVar[str]
    log_name: ClassVar[str]
    ready_path: ClassVar[str]  # any HTTP answer here means it serves
    start_fix: ClassVar[str] = ""  # the usual causes of a failed start, after "read <log>"
    start_timeout: ClassVar[float] = START_TIMEOUT
    stop_timeout: ClassVar[float] = STOP_TIMEOUT  # the grace after SIGTERM, before SIGKILL

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def config_path(self) -> Path:
        return self.root / self.config_name

    @property
    def log_path(self) -> Path:
        return self.root / self.log_name

    @classmethod
    def from_state(cls, path: Path) -> Self:
        state = json.loads(path.read_text())
        return cls(pid=int(state["pid"]), port=int(state["port"]), root=Path(state["root"]))

    def write_state(self, path: Path) -> None:
        """Record ``{pid, port, root}`` so another process can find and stop this server."""
        path.write_text(json.dumps({"pid": self.pid, "port": self.port, "root": str(self.root)}, indent=2) + "\n")

    @classmethod
    def stop_recorded(cls, path: Path) -> bool:
        """Stop the server recorded in ``path`` if it still runs; False when there was nothing to stop."""
        if not path.exists():
            return False
        server = cls.from_state(path)
        stopped = server.is_running() and server.stop()
        path.unlink()
        return stopped

    def is_running(self) -> bool:
        """True only if ``pid`` is alive and runs this server's command line, so a recycled PID is never hit."""
        try:
            argv = Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state != "Z" and os.fsencode(self.config_path) in argv and self._runs_program(argv)

    def stop(self) -> bool:
        """SIGTERM our own PID, SIGKILL it if it lingers, and wait until it is gone."""
        if not self.is_running():
            return False
        for sig in (signal.SIGTERM, signal.SIGKILL):
            os.kill(self.pid, sig)
            if self._wait_gone(self.stop_timeout):
                return True
        raise ToolError(f"{self.program} (pid {self.pid}) did not exit after SIGKILL", f"check `ps -p {self.pid}`")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _runs_program(self, argv: list[bytes]) -> bool:
        """Whether a command line (which holds our config path) is this kind of server's."""
        raise NotImplementedError


    @classmethod
    def _spawn(cls, root: Path, port: int, argv: list[str]) -> Self:
        """Run ``argv`` detached with its output in the log, and return once ``ready_path`` answers."""
        unstarted = cls(pid=0, port=port, root=root)
        with unstarted.log_path.open("ab") as log:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        server = cls(pid=process.pid, port=port, root=root)
        server._wait_ready(process)
        return server

    def serves(self) -> bool:
        """Whether it answers: any HTTP status at ``ready_path``."""
        try:
            httpx.get(f"{self.url}{self.ready_path}", timeout=1.0)
        except httpx.TransportError:
            return False
        return True

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ToolError(
                    f"{self.program} exited with status {process.returncode} at start: {self.log_tail()}",
                    f"read {self.log_path}{self.start_fix}",
                )
            if self.serves():
                return
            time.sleep(0.05)
        self.stop()
        raise ToolError(
            f"{self.program} did not answer within {self.start_timeout:.0f} s: {self.log_tail()}",
            f"read {self.log_path}",
        )

    def _wait_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                # Reap it if it is our child; a non-child is gone once /proc says so.
                if os.waitpid(self.pid, os.WNOHANG)[0] == self.pid:
                    return True
            except ChildProcessError:
                pass
            if not self.is_running():
                self._reap()
                return True
            time.sleep(0.02)
        return False

    def _reap(self) -> None:
        """A dead child stays a zombie (still signalable) until waited for; a non-child is reaped by its parent."""
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


@dataclass(frozen=True)
class ModuleServer(LocalServer):
    """A server that is a ``python -m <module> CONFIG.json`` of promo's own (the stand-ins), its settings a pydantic
    model with a ``port``, written as JSON next to its log."""

    module: ClassVar[str]

    @classmethod
    def start(cls, root: Path, settings: BaseModel) -> Self:
        """Start it with ``settings`` (``port`` 0: a free one) and return once it answers."""
        root = root.resolve()
        root.mkdir(parents=True, exist_ok=True)
        settings = settings.model_copy(update={"port": getattr(settings, "port") or free_port()})
        config_path = root / cls.config_name
        config_path.write_text(settings.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return cls._spawn(root, getattr(settings, "port"), [sys.executable, "-m", cls.module, str(config_path)])

    def _runs_program(self, argv: list[bytes]) -> bool:
        return argv[1:3] == [b"-m", self.module.encode()]


def module_main(argv: list[str], module: str, settings: type[M], serve: Callable[[M], None]) -> None:
    """The ``python -m <module> CONFIG.json`` entry point of a ``ModuleServer``: log to stdout, read its settings from
    the JSON ``start`` wrote, serve until stopped."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)
    if len(argv) != 1:
        sys.exit(f"usage: python -m {module} CONFIG.json")
    serve(settings.model_validate_json(Path(argv[0]).read_text(encoding="utf-8")))


def exit_on_sigterm(signum: int, frame: object) -> None:
    """A ``ModuleServer`` stopped by ``stop`` (SIGTERM) leaves ``serve_forever`` through its ``finally``, as on Ctrl-C."""
    raise SystemExit(0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def state_path(server_root: Path) -> Path:
    return server_root / "state.json"


def running_server(
    kind: type[Server], root: Path, previous_host: str | None, start: Callable[[int | None], Server]
) -> Server:
    """The recorded server if it runs, else a new one: on promo.yaml's port when that is still free."""
    state = state_path(root)
    if state.exists():
        recorded = kind.from_state(state)
        if recorded.is_running():
            return recorded
    port = int(previous_host.rpartition(":")[2]) if previous_host is not None else None
    server = start(port if port is not None and port_is_free(port) else None)
    server.write_state(state)
    return server


def port_is_free(port: int) -> bool:
    """Free to listen on as the servers do (SO_REUSEADDR): a stopped server's closed connections may linger in
    TIME_WAIT on the port, which keeps a plain bind out but not a server."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
