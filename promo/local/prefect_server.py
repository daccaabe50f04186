"""A long-lived local Prefect server, and a process worker, for the `promo` command and the demo.

Without ``PREFECT_API_URL`` every Prefect client process starts a temporary API server of its own: seconds of
start-up per command, and past Prefect's 20 s limit on a busy machine (``RuntimeError: Timed out while attempting to
connect to ephemeral Prefect API server``). ``promo server start`` runs one ``prefect server start`` on SQLite under
the promo home instead, and every later `promo` command finds it through its state file and uses it.

Both processes are ``LocalServer``s: detached, each with its own log, found again by a state file, stopped by PID.
They start through this module (``python -m promo.local.prefect_server LAUNCH.json``), which gives them their own Prefect
environment and runs Prefect's CLI in-process, so the launch file's path in the command line tells our process from
a recycled PID's.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Generic, Self, TypeVar

import httpx

from promo.errors import ToolError
from promo.local.home import server_root
from promo.local.processes import LocalServer, free_port, port_is_free

DEFAULT_PORT = 4200  # Prefect's usual port, so the UI is where people look for it
DEFAULT_POOL = "promo"  # the work pool `promo setup` registers deployments on
# The check every promo command makes before it runs: short, so a hung server costs a command little.
QUICK_HEALTH_SECONDS = 2.0
# Under a deployment a gate suspends, and an approval puts its run back in the queue "to run now": it resumes when a
# worker next asks for work, so the query interval is the wait (0-10 s with Prefect's default, measured by the
# `approval` bench). One query a second per worker costs the server little. Prefetch does not help here: it only
# reaches runs scheduled in the future.
WORKER_SETTINGS = {"PREFECT_WORKER_QUERY_SECONDS": "1"}
# Leases on files under the server's PREFECT_HOME instead of in its memory: a slot held across `promo server
# stop/start` (or a server replaced after a failed health check) keeps its lease, so its holder's release gives it
# back and a dead holder's lease still runs out. Waiters give back slots stranded on any server too
# (promo.tasks.slot_holders); this makes that the rare path on promo's own.
SERVER_SETTINGS = {"PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect.server.concurrency.lease_storage.filesystem"}
EPHEMERAL_START_FAILURE = "Timed out while attempting to connect to ephemeral Prefect API server"

Process = TypeVar("Process", bound=LocalServer)


@dataclass(frozen=True)
class LaunchedProcess(LocalServer):
    """A program run detached through its launcher module, with the environment its launch file gives it."""

    launcher: ClassVar[str] = "promo.local.prefect_server"  # runs Prefect's CLI
    state_name: ClassVar[str]
    # Keep the starting command's own PREFECT_* variables (never written to the launch file: one may be an API key).
    inherits_prefect_env: ClassVar[bool] = False

    @classmethod
    def state_path(cls, root: Path) -> Path:
        return root / cls.state_name

    @classmethod
    def recorded(cls, root: Path) -> Self | None:
        """The process the state file names, if it still runs; a state file left by a dead one is removed."""
        path = cls.state_path(root)
        try:
            process = cls.from_state(path)
        except FileNotFoundError:
            return None
        except (ValueError, KeyError):  # cut short by a crash mid-write: it names nothing we could stop
            process = None
        if process is not None and process.is_running():
            return process
        path.unlink()
        return None

    @classmethod
    def _launch(cls, root: Path, port: int, args: list[str], env: dict[str, str]) -> Self:
        unstarted = cls(pid=0, port=port, root=root)
        launch = {"args": args, "env": env, "inherit_prefect_env": cls.inherits_prefect_env}
        unstarted.config_path.write_text(json.dumps(launch, indent=2) + "\n")
        started = cls._spawn(root, port, [sys.executable, "-m", cls.launcher, str(unstarted.config_path)])
        started.write_state(cls.state_path(root))
        return started

    def launch_env(self) -> dict[str, str]:
        return dict(json.loads(self.config_path.read_text())["env"])

    def _runs_program(self, argv: list[bytes]) -> bool:
        return argv[1:3] == [b"-m", self.launcher.encode()]


@dataclass(frozen=True)
class PrefectServer(LaunchedProcess):
    """``prefect server start`` on 127.0.0.1 with its UI, its SQLite database under ``root``."""

    program = "prefect server"
    config_name = "server.json"
    log_name = "server.log"
    state_name = "server.state.json"
    ready_path = "/api/health"
    start_fix = "; then `promo server stop` and `promo server start` again"
    # Loaded 2-core machines were measured taking well over Prefect's own 20 s: bounded, but generous.
    start_timeout = 120.0
    stop_timeout = 30.0  # its services shut down cleanly first, so the SQLite database is never cut mid-write

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def healthy(self, timeout: float = QUICK_HEALTH_SECONDS) -> bool:
        try:
            return httpx.get(f"{self.api_url}/health", timeout=timeout).status_code == 200
        except httpx.HTTPError:
            return False


@dataclass(frozen=True)
class ProcessWorker(LaunchedProcess):
    """``prefect worker start --type process`` for the server's deployments; ``port`` serves its health check."""

    program = "prefect worker"
    config_name = "worker.json"
    log_name = "worker.log"
    state_name = "worker.state.json"
    ready_path = "/health"
    start_timeout = 120.0

    @property
    def pool(self) -> str:
        args = json.loads(self.config_path.read_text())["args"]
        return str(args[args.index("--pool") + 1])


@dataclass(frozen=True)
class Started(Generic[Process]):
    process: Process
    reused: bool  # it was running already


def start_server(port: int = DEFAULT_PORT) -> Started[PrefectServer]:
    """The recorded server if it runs and answers, else a new one on ``port`` (a free port if that is taken)."""
    root = server_root()
    with _start_lock(root):
        running = PrefectServer.recorded(root)
        if running is not None:
            if running.healthy():
                return Started(running, reused=True)
            running.stop()  # it runs but no longer answers: a fresh one is the only way forward
        chosen = port if port_is_free(port) else free_port()
        env = {
            "PREFECT_HOME": str(root / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # The UI asks the API at the port of this setting (default 4200), not at --port: on another port it
            # would show another server's runs, or none.
            "PREFECT_SERVER_API_PORT": str(chosen),
            **SERVER_SETTINGS,
        }
        args = ["server", "start", "--host", "127.0.0.1", "--port", str(chosen)]
        return Started(PrefectServer._launch(root, chosen, args, env), reused=False)


def start_worker(server: PrefectServer, pool: str = DEFAULT_POOL) -> Started[ProcessWorker]:
    """The recorded worker if it runs, else a new one polling ``pool`` on ``server``."""
    root = server_root()
    with _start_lock(root):
        running = ProcessWorker.recorded(root)
        if running is not None:
            return Started(running, reused=True)
        port = free_port()
        env = {
            "PREFECT_API_URL": server.api_url,
            "PREFECT_HOME": str(root / "worker-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            **WORKER_SETTINGS,
            "PATH": worker_path(),
            "PREFECT_WORKER_WEBSERVER_HOST": "127.0.0.1",
            "PREFECT_WORKER_WEBSERVER_PORT": str(port),
        }
        args = ["worker", "start", "--pool", pool, "--type", "process", "--with-healthcheck"]
        return Started(ProcessWorker._launch(root, port, args, env), reused=False)


def worker_path() -> str:
    """PATH for a process worker: this interpreter's directory first, so the pool's job command ``python -m
    prefect.engine`` (``promo setup``, see promo.deployments.deploy) runs the Python promo is installed in."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)])


def stop_server() -> list[str]:
    """Stop the worker, then the server, each by its recorded PID; what was stopped, by name."""
    root = server_root()
    with _start_lock(root):
        kinds: tuple[type[LaunchedProcess], ...] = (ProcessWorker, PrefectServer)
        return [kind.program for kind in kinds if kind.stop_recorded(kind.state_path(root))]


def running_server() -> PrefectServer | None:
    return PrefectServer.recorded(server_root())


def running_worker() -> ProcessWorker | None:
    return ProcessWorker.recorded(server_root())


def use_running_server() -> str | None:
    """Point this process's Prefect client at the recorded server, unless ``PREFECT_API_URL`` names one already.

    Returns the line to show when a server is recorded but does not answer (the command then starts Prefect's
    temporary API, as it would with no server at all). Once Prefect's settings are loaded it is too late to choose,
    and the caller has chosen (a test calling ``promo.cli.main.main`` under its own server): nothing is changed then.
    """
    if os.environ.get("PREFECT_API_URL") or "prefect.settings" in sys.modules:
        return None
    root = server_root()
    had_state = PrefectServer.state_path(root).exists()
    server = PrefectServer.recorded(root)
    if server is None:
        return "the local Prefect server has stopped; run `promo server start`" if had_state else None
    if not server.healthy():
        return f"the local Prefect server (pid {server.pid}) does not answer at {server.url}; read {server.log_path}"
    os.environ["PREFECT_API_URL"] = server.api_url
    return None


def ephemeral_start_failure(error: RuntimeError) -> ToolError | None:
    """Prefect's own failure to start its temporary API, as one line with the fix; None for any other error."""
    if EPHEMERAL_START_FAILURE not in str(error):
        return None
    return ToolError(
        "Prefect's temporary API server did not start in time (the machine is busy)",
        "run `promo server start` once: every promo command then uses that server instead",
    )


@contextmanager
def _start_lock(root: Path) -> Iterator[None]:
    """One start or stop at a time, so two `promo server start` never launch two servers."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / "start.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def read_launch_file(path: Path) -> list[str]:
    """Take on the Prefect settings a launch file gives (before Prefect is imported; no inherited ones unless it
    says so); its args."""
    launch = json.loads(path.read_text())
    if not launch.get("inherit_prefect_env"):
        for key in [key for key in os.environ if key.startswith("PREFECT_")]:
            del os.environ[key]
    os.environ.update(launch["env"])
    return list(launch["args"])


def _run_prefect_cli(path: Path) -> None:
    args = read_launch_file(path)
    from prefect.cli import app

    sys.argv = ["prefect", *args]
    sys.exit(app())


if __name__ == "__main__":
    _run_prefect_cli(Path(sys.argv[1]))
