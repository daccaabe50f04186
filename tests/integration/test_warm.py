"""The warm process: `promo server start` runs it beside the server, and the real `promo` console script hands flow
commands to it. Each test checks what a user sees (output, exit status, a command that stops on Ctrl-C) and, through
the warm process's log, where the command ran."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from promo.local import handoff
from promo.local.prefect_server import WarmProcess, stop_server
from promo.local.warm import CODE_CHANGED
from promo.local.sandbox import Sandbox, create_sandbox, stop_sandbox
from tests.integration.conftest import BIN, free_port, wait_until

pytestmark = pytest.mark.integration

# Deadlines, not costs: a command takes about a second here on an idle machine, a build a few more.
COMMAND_SECONDS = 300
GATE_SECONDS = 120
SECRET = "pnu_not-a-real-key"  # a Prefect Cloud key's shape: the commands' environment holds one


class World:
    def __init__(self, home: Path, sandbox: Sandbox) -> None:
        self.home = home
        self.sandbox = sandbox

    def env(self, **extra: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("PREFECT_", "PROMO_"))}
        env.update(
            PROMO_HOME=str(self.home), PROMO_CONFIG=str(self.sandbox.config_path), PROMO_USER="dana",
            PREFECT_PROFILES_PATH=str(self.profiles), PREFECT_API_KEY=SECRET, **extra,
        )  # fmt: skip
        return env

    @property
    def profiles(self) -> Path:
        return self.home.parent / "profiles.toml"

    def promo(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "promo"), *args], env=self.env(**extra_env), capture_output=True, text=True,
            timeout=COMMAND_SECONDS, cwd=self.sandbox.directory, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    @property
    def warm(self) -> WarmProcess:
        found = WarmProcess.recorded(self.home / "server")
        assert found is not None, "no warm process recorded"
        return found

    def log(self) -> str:
        return self.warm.log_path.read_text()

    def served(self, command: str) -> list[str]:
        """The pids of the commands the warm process ran as ``promo <command>``."""
        return re.findall(rf"^command (\d+): promo {re.escape(command)} \(in ", self.log(), flags=re.MULTILINE)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("warm")
    sandbox = create_sandbox(base / "world")
    made = World(base / "home", sandbox)
    try:
        started = made.promo("server", "start", "--port", str(free_port()))
        assert started.returncode == 0, started.stdout + started.stderr
        assert "warm process started" in started.stdout, started.stdout
        yield made
    finally:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("PROMO_HOME", str(made.home))
            stop_server()
        stop_sandbox(sandbox.directory)


def test_a_flow_command_runs_in_the_warm_process_as_it_runs_here(world: World) -> None:
    warm = world.promo("bump-version", "patch")
    here = world.promo("bump-version", "patch", PROMO_IN_PROCESS="1")

    for result in (warm, here):
        assert result.returncode == 0, result.stderr
        assert re.fullmatch(r"chart version \S+ -> \S+ \(commit [0-9a-f]{40}\)\n", result.stdout), result.stdout
    [pid] = world.served("bump-version patch")  # the second ran in its own process, not here
    assert f"command {pid}: exit status 0" in world.log()
    # Both moved main on: the warm command's commit is the parent of the in-process one's.
    first, second = (re.search(r"-> (\S+)", r.stdout)[1] for r in (warm, here))
    assert first != second


def test_a_refused_command_shows_its_one_line_and_exit_status(world: World) -> None:
    result = world.promo("hotfix", "v9.9.9")

    assert result.returncode == 4, result.stderr
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert errors == ["promo: error: release tag v9.9.9 does not exist; pick a release from `promo releases`"]
    [pid] = world.served("hotfix v9.9.9")
    assert f"command {pid}: exit status 4" in world.log()


def test_other_prefect_settings_run_the_command_here(world: World) -> None:
    result = world.promo("bump-version", "minor", PREFECT_LOGGING_LEVEL="WARNING")

    assert result.returncode == 0, result.stderr
    assert world.served("bump-version minor") == []
    assert "refused promo bump-version minor: the command's Prefect settings differ" in world.log()


def test_new_code_restarts_it_under_the_same_pid(world: World) -> None:
    """A client whose code differs (an edit, an upgrade) is refused; the warm process re-executes itself."""
    before = world.warm
    log_size = before.log_path.stat().st_size
    reader, writer = os.pipe()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(COMMAND_SECONDS)
            connection.connect(os.fspath(handoff.socket_path(before.root)))
            request = {"argv": ["bump-version", "patch"], "cwd": str(world.sandbox.directory), "env": world.env()}
            handoff.send(connection, {**request, "code": "older"}, fds=[reader, writer, writer])
            assert next(handoff.messages(connection)) == {"refused": CODE_CHANGED}
        os.close(writer)  # the restarted process must hold no copy of the client's output: its reader sees the end
        writer = -1
        assert os.read(reader, 1) == b""
    finally:
        os.close(reader)
        if writer != -1:
            os.close(writer)

    wait_until(lambda: "restarting" in before.log_path.read_text()[log_size:] and before.serves(), 120, "restart")
    assert world.warm.pid == before.pid
    assert world.promo("bump-version", "patch").returncode == 0
    assert len(world.served("bump-version patch")) == 2


@pytest.mark.parametrize("request_line", [b"not json\n", b'{"code": "x"}\n', b'{"argv": ["bump-version"]}\n'])
def test_a_malformed_request_is_dropped_and_the_warm_process_serves_on(world: World, request_line: bytes) -> None:
    reader, writer = os.pipe()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(COMMAND_SECONDS)
            connection.connect(os.fspath(handoff.socket_path(world.warm.root)))
            socket.send_fds(connection, [request_line], [reader, writer, writer])
            assert connection.recv(65536) in (b"", b'{"refused": "%s"}\n' % CODE_CHANGED.encode())
        os.close(writer)
        writer = -1
        assert os.read(reader, 1) == b""  # no copy of the client's output is kept
    finally:
        os.close(reader)
        if writer != -1:
            os.close(writer)
    wait_until(world.warm.serves, 120, "the warm process to serve (again, if the request looked like older code)")
    assert world.promo("bump-version", "patch").returncode == 0


def test_a_changed_prefect_profile_restarts_it_too(world: World) -> None:
    before = world.warm
    log_size = before.log_path.stat().st_size
    world.profiles.write_text('active = "promo-test"\n\n[profiles.promo-test]\n')  # `prefect profile create`'s shape

    result = world.promo("bump-version", "minor")

    assert result.returncode == 0, result.stderr
    wait_until(lambda: "restarting" in before.log_path.read_text()[log_size:] and before.serves(), 120, "restart")
    assert world.warm.pid == before.pid


@pytest.fixture(scope="module")
def published(world: World) -> None:
    """A version in dev, so `promote-test` has something to wait at its gate with."""
    result = world.promo("publish-dev")
    assert result.returncode == 0, result.stderr


@pytest.fixture()
def waiting(world: World, published: None) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`promo promote-test` handed to the warm process and waiting at its gate; the client and the command's pid."""
    served_before = set(world.served("promote-test"))
    client = subprocess.Popen(
        [str(BIN / "promo"), "promote-test"], env=world.env(), cwd=world.sandbox.directory, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_until(
            lambda: set(world.served("promote-test")) - served_before, GATE_SECONDS, "the warm process to take it"
        )
        [pid] = set(world.served("promote-test")) - served_before
        wait_until(
            lambda: world.promo("pending", "--json").stdout.count('"env": "test"') == 1,
            GATE_SECONDS,
            "the gate to open",
            alive=client,
        )
        yield client, int(pid)
    finally:
        if client.poll() is None:
            client.kill()
        client.wait(timeout=GATE_SECONDS)


def test_ctrl_c_reaches_a_command_waiting_at_its_gate(world: World, waiting: tuple[subprocess.Popen[str], int]) -> None:
    client, pid = waiting
    client.send_signal(signal.SIGINT)
    out, err = client.communicate(timeout=GATE_SECONDS)

    assert client.returncode == 130, out + err
    assert f"command {pid}: exit status 130" in world.log()
    wait_until(lambda: _group_gone(pid), GATE_SECONDS, "the command's processes to end")


def test_a_terminated_client_ends_its_command_and_says_how(
    world: World, waiting: tuple[subprocess.Popen[str], int]
) -> None:
    client, pid = waiting
    client.terminate()
    out, err = client.communicate(timeout=GATE_SECONDS)

    assert client.returncode == 128 + signal.SIGTERM, out + err
    assert "error" not in err
    wait_until(lambda: _group_gone(pid), GATE_SECONDS, "the command's processes to end")


def test_a_killed_client_takes_its_command_with_it(world: World, waiting: tuple[subprocess.Popen[str], int]) -> None:
    """SIGKILL cannot be passed on (a cancelled CI job): the command notices its client's end of the socket close."""
    client, pid = waiting
    client.kill()
    client.wait(timeout=GATE_SECONDS)

    wait_until(lambda: _group_gone(pid), GATE_SECONDS, "the command's processes to end")
    assert f"command {pid}: exit status" not in world.log()  # ended by the signal, not by finishing


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def test_server_status_shows_it_and_no_secret_is_written_for_it(world: World) -> None:
    status = world.promo("server", "status")
    assert f"warm process: pid {world.warm.pid}, serving" in status.stdout, status.stdout
    # It was started, and serves, with the key in its environment; its launch file does not hold it.
    assert SECRET not in world.warm.config_path.read_text()
