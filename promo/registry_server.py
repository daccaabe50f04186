"""A real local OCI registry (Debian's ``docker-registry``, the CNCF distribution server) for tests and sandboxes.

Talking to the genuine server catches what a fake would hide: upload Location handling, digest checks,
pagination, auth challenges. The process is detached with its own log file and is only ever stopped by the
PID it was started with; a JSON state file lets another process (``make sandbox-down``) stop it later, after
checking through ``/proc`` that the PID still belongs to this registry and not to a recycled process.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from promo.errors import ToolError

EXECUTABLE = "docker-registry"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


@dataclass(frozen=True)
class RegistryServer:
    """A running ``docker-registry serve`` on 127.0.0.1, storing under ``root``."""

    pid: int
    port: int
    root: Path

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def config_path(self) -> Path:
        return self.root / "config.yml"

    @property
    def log_path(self) -> Path:
        return self.root / "registry.log"

    @classmethod
    def start(cls, root_dir: Path, *, port: int | None = None, htpasswd: Path | None = None) -> RegistryServer:
        """Start a registry on ``port`` (a free one if None) and return once ``GET /v2/`` answers."""
        executable = shutil.which(EXECUTABLE)
        if executable is None:
            raise ToolError(
                f"{EXECUTABLE} not found", f"install it with `apt-get install {EXECUTABLE}` (or run `make setup`)"
            )
        root_dir = root_dir.resolve()
        root_dir.mkdir(parents=True, exist_ok=True)
        unstarted = cls(pid=0, port=port or _free_port(), root=root_dir)
        unstarted.config_path.write_text(json.dumps(unstarted._config(htpasswd), indent=2))
        with unstarted.log_path.open("ab") as log:
            process = subprocess.Popen(
                [executable, "serve", str(unstarted.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = cls(pid=process.pid, port=unstarted.port, root=root_dir)
        server._wait_ready(process)
        return server

    @classmethod
    def from_state(cls, path: Path) -> RegistryServer:
        state = json.loads(path.read_text())
        return cls(pid=int(state["pid"]), port=int(state["port"]), root=Path(state["root"]))

    def write_state(self, path: Path) -> None:
        """Record ``{pid, port, root}`` so another process can find and stop this registry."""
        path.write_text(json.dumps({"pid": self.pid, "port": self.port, "root": str(self.root)}, indent=2) + "\n")

    @classmethod
    def stop_recorded(cls, path: Path) -> bool:
        """Stop the registry recorded in ``path`` if it still runs; False when there was nothing to stop."""
        if not path.exists():
            return False
        server = cls.from_state(path)
        stopped = server.is_running() and server.stop()
        path.unlink()
        return stopped

    def is_running(self) -> bool:
        """True only if ``pid`` is alive and its command line is this registry's, so a recycled PID is never hit."""
        try:
            argv = Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return (
            state != "Z"
            and Path(os.fsdecode(argv[0])).name == EXECUTABLE
            and os.fsencode(self.config_path) in argv
        )

    def stop(self) -> bool:
        """SIGTERM our own PID, SIGKILL it if it lingers, and wait until it is gone."""
        if not self.is_running():
            return False
        for sig in (signal.SIGTERM, signal.SIGKILL):
            os.kill(self.pid, sig)
            if self._wait_gone(STOP_TIMEOUT):
                return True
        raise ToolError(f"{EXECUTABLE} (pid {self.pid}) did not exit after SIGKILL", f"check `ps -p {self.pid}`")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _config(self, htpasswd: Path | None) -> dict[str, object]:
        # JSON is YAML, so the config needs no escaping of paths.
        config: dict[str, object] = {
            "version": "0.1",
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.root / "data")}, "delete": {"enabled": True}},
            # A fixed per-instance upload-state secret; without one the server logs a warning at every start.
            "http": {"addr": self.host, "secret": secrets.token_hex(16)},
        }
        if htpasswd is not None:
            config["auth"] = {"htpasswd": {"realm": "promo", "path": str(htpasswd.resolve())}}
        return config

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    raise ToolError(
                        f"{EXECUTABLE} exited with status {process.returncode} at start: {self.log_tail()}",
                        f"read {self.log_path}; a busy port or a bad htpasswd file are the usual causes",
                    )
                try:
                    client.get(f"{self.url}/v2/")  # 200, or 401 with auth: either way it serves
                    return
                except httpx.TransportError:
                    time.sleep(0.05)
        self.stop()
        raise ToolError(
            f"{EXECUTABLE} did not answer on {self.url}/v2/ within {START_TIMEOUT:.0f} s: {self.log_tail()}",
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
