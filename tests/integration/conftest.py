"""A real Prefect server on a throwaway PostgreSQL cluster, a process worker, and the `promo` CLI as subprocesses.

Everything is started on free loopback ports under one temporary directory and stopped by PID at the end.
PostgreSQL refuses to run as root, so as root its commands run as the ``postgres`` system user (made by
``apt-get install postgresql``), in a directory that user owns.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from promo.local.prefect_server import worker_path

PROJECT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
STARTUP_SECONDS = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check, timeout: float, what: str, interval: float = 0.2, alive: subprocess.Popen | None = None, log: Path | None = None):
    """Poll ``check`` until it returns something truthy; fail naming ``what`` (and the log's tail) at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if alive is not None and alive.poll() is not None:
            pytest.fail(f"{what}: the process exited with {alive.returncode}\n{tail(log)}")
        time.sleep(interval)
    pytest.fail(f"{what}: not within {timeout} s\n{tail(log)}")


def tail(log: Path | None, lines: int = 40) -> str:
    if log is None or not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def stop(process: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM the process group we started (by its id), SIGKILL it if it lingers."""
    if process.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            continue


@dataclass
class Postgres:
    root: Path
    port: int
    bindir: Path
    run_as: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/prefect"

    def command(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.run_as, str(self.bindir / tool), *args], capture_output=True, text=True, timeout=60, cwd=self.root
        )


def postgres_bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb") or ""]
    if not found[-1]:
        pytest.fail("PostgreSQL is not installed: `make setup` installs it (Debian: apt-get install postgresql)")
    return Path(found[-1]).parent


@contextmanager
def postgres_cluster() -> Iterator[Postgres]:
    """A throwaway PostgreSQL cluster with a database ``prefect``, stopped and removed on exit."""
    bindir = postgres_bindir()
    # Not under pytest's basetemp: that is private to root (0700), and the cluster runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="promo-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    pg = Postgres(root, free_port(), bindir, run_as)
    data, log = root / "data", root / "postgres.log"
    result = pg.command("initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
    assert result.returncode == 0, result.stderr
    options = f"-p {pg.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    result = pg.command("pg_ctl", "-D", str(data), "-o", options, "-l", str(log), "-w", "-t", "30", "start")
    assert result.returncode == 0, f"{result.stdout}{result.stderr}\n{tail(log)}"
    try:
        result = pg.command("createdb", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", "prefect")
        assert result.returncode == 0, result.stderr
        yield pg
    finally:
        pg.command("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    with postgres_cluster() as pg:
        yield pg


@dataclass
class PrefectServer:
    url: str  # the API URL, .../api
    home: Path
    process: subprocess.Popen
    log: Path

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a client process (CLI, worker) of this server."""
        env = {
            key: value for key, value in os.environ.items() if not key.startswith("PREFECT_") and key != "PROMO_CONFIG"
        }
        env.update(
            PREFECT_API_URL=self.url,
            PREFECT_HOME=str(self.home),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_LOGGING_LEVEL="INFO",
        )
        env.update(extra)
        return env


@contextmanager
def prefect_server_on(postgres: Postgres, root: Path) -> Iterator[PrefectServer]:
    """``prefect server start`` on ``postgres``, keeping its files under ``root``; stopped by its PID on exit."""
    port = free_port()
    log = root / "server.log"
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(root / "home"),
        PREFECT_API_DATABASE_CONNECTION_URL=postgres.url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
    )
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=root, start_new_session=True,
        )  # fmt: skip
    server = PrefectServer(f"http://127.0.0.1:{port}/api", root / "client-home", process, log)
    try:
        wait_until(lambda: _healthy(server.url), STARTUP_SECONDS, "the Prefect server's /health", alive=process, log=log)
        yield server
    finally:
        stop(process)


@pytest.fixture(scope="session")
def prefect_server(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    with prefect_server_on(postgres, tmp_path_factory.mktemp("prefect-server")) as server:
        yield server


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Worker:
    process: subprocess.Popen
    log: Path
    workdir: Path


def launch_worker(server: PrefectServer, root: Path, pool: str, *args: str, name: str = "worker", **env: str) -> Worker:
    """``prefect worker start --pool POOL --type process ARGS`` polling every second, working in ``root/NAME`` (made
    empty) with ``env`` added to its environment (e.g. its own HOME); its log is ``root/NAME-POOL.log``. The caller
    stops it (``stop(worker.process)``)."""
    log = root / f"{name}-{pool}.log"
    workdir = root / name
    workdir.mkdir(exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process", *args],
            # its interpreter first on PATH: the pool's job command is `python -m prefect.engine`
            env=server.env(
                PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_PREFETCH_SECONDS="1", **{"PATH": worker_path(), **env}
            ),
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir, start_new_session=True,
        )  # fmt: skip
    return Worker(process, log, workdir)


@pytest.fixture()
def start_worker(prefect_server: PrefectServer, tmp_path: Path) -> Iterator:
    """Start ``prefect worker start --pool POOL`` (polling every second) in an empty working directory of its own,
    with ``env`` added to its environment (e.g. its own HOME); stopped at the end of the test."""
    started: list[Worker] = []

    def start(pool: str, **env: str) -> Worker:
        suffix = f"-{len(started) + 1}" if started else ""  # a second worker gets its own directory and log
        worker = launch_worker(prefect_server, tmp_path, pool, name=f"worker{suffix}", **env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        stop(worker.process)


@pytest.fixture()
def promo(prefect_server: PrefectServer):
    """The real `promo` console script, run against the test's server from the project directory."""

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "promo"), *args], env=prefect_server.env(), capture_output=True, text=True, timeout=120,
            cwd=PROJECT, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    return run
