"""`promo server`: one real `prefect server start` (SQLite under a temporary PROMO_HOME), found again by every `promo`
command instead of a temporary API per process, and stopped by the PID it was started with."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from promo.local.prefect_server import PrefectServer, running_server, stop_server
from tests.integration.conftest import BIN, PROJECT, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# A deadline, not a cost: the server starts in 5-15 s on an idle machine; its own start-up limit is 120 s.
COMMAND_SECONDS = 180


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A PROMO_HOME of the test's own; whatever server it recorded is stopped by its PID at the end."""
    home = tmp_path / "promo-home"
    (home / "client-prefect-home").mkdir(parents=True)
    monkeypatch.setenv("PROMO_HOME", str(home))
    yield home
    stop_server()


def promo(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real `promo` console script with no Prefect settings of its own: it must find the server by itself."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(
        PROMO_HOME=str(home), PREFECT_HOME=str(home / "client-prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false"
    )
    return subprocess.run(
        [str(BIN / "promo"), *args], env=env, capture_output=True, text=True, timeout=COMMAND_SECONDS, cwd=PROJECT,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def a_waiting_gate(server: PrefectServer) -> str:
    """A paused run carrying promo's gate tags, made through the server's REST API; its id."""
    with httpx.Client(base_url=server.api_url, timeout=30) as api:
        flow = api.post("/flows/", json={"name": "promote-test"}).raise_for_status().json()
        run = api.post(
            "/flow_runs/",
            json={
                "flow_id": flow["id"],
                "tags": ["promo-gate", "app:hello", "env:test", "version:0.1.0-rc.abc1234"],
                "state": {"type": "PAUSED", "name": "Suspended"},
            },
        ).raise_for_status()
    return str(run.json()["id"])


def test_start_status_use_reuse_and_stop(home: Path) -> None:
    with socket.socket() as taken:  # someone else listens on the port asked for: the server moves to a free one
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        taken_port = taken.getsockname()[1]
        started = promo(home, "server", "start", "--port", str(taken_port))
    assert started.returncode == 0, started.stderr
    server = running_server()
    assert server is not None and server.port != taken_port
    assert f"Prefect server started: UI {server.url} (pid {server.pid}" in started.stdout

    status = promo(home, "server", "status")
    assert f"API {server.api_url}, pid {server.pid}, healthy" in status.stdout, status.stdout + status.stderr

    # A promo command with no PREFECT_API_URL lists a gate that exists only on this server, linked to its UI.
    run_id = a_waiting_gate(server)
    pending = promo(home, "pending")
    assert pending.returncode == 0, pending.stderr
    assert f"{server.url}/runs/flow-run/{run_id}" in pending.stdout, pending.stdout
    assert "temporary server" not in pending.stderr.lower()

    again = promo(home, "server", "start")
    assert again.returncode == 0, again.stderr
    assert f"Prefect server running: UI {server.url} (pid {server.pid}" in again.stdout
    assert running_server() == server

    stopped = promo(home, "server", "stop")
    assert stopped.stdout.strip() == "stopped: prefect server", stopped.stdout + stopped.stderr
    assert not server.is_running()
    assert not server.healthy()
    assert not PrefectServer.state_path(server.root).exists()
    assert promo(home, "server", "status").stdout.startswith("Prefect server: not running")


@pytest.mark.parametrize("state", ["dead pid", "cut short"])
def test_a_stopped_server_leaves_a_note_not_a_stale_url(home: Path, state: str) -> None:
    """A state file whose PID is gone (a reboot, a kill), or cut short mid-write, is cleared, and the command says
    to start the server."""
    root = home / "server"
    root.mkdir(parents=True)
    PrefectServer(pid=2**22 + 1, port=free_port(), root=root).write_state(PrefectServer.state_path(root))
    if state == "cut short":
        PrefectServer.state_path(root).write_text('{"pid": 4194')
    script = (
        "import os; from promo.local.prefect_server import use_running_server; "
        "print(use_running_server()); print(os.environ.get('PREFECT_API_URL'))"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.stdout.splitlines() == ["the local Prefect server has stopped; run `promo server start`", "None"]
    assert not PrefectServer.state_path(root).exists()


def test_a_failed_ephemeral_start_is_one_line(home: Path) -> None:
    """No server, and Prefect's temporary API does not come up in time: one line naming the fix, no traceback."""
    script = """
import sys
from prefect.server.api import server

def start(self, timeout=None):
    raise RuntimeError("Timed out while attempting to connect to ephemeral Prefect API server. stdout: ...")

server.SubprocessASGIServer.start = start
sys.argv = ["promo", "promote-test"]  # a flow command: its run is created through the API first
from promo.cli.main import main
main()
"""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home / "client-prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=COMMAND_SECONDS, cwd=PROJECT
    )
    assert result.returncode == 8, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "promo: error: Prefect's temporary API server did not start in time (the machine is busy); "
        "run `promo server start` once: every promo command then uses that server instead"
    )
