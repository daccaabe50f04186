"""Commands that run no flow answer without importing Prefect (seconds of start-up), and their flags are consistent.

Structural, not timed: each command runs in a new process through a wrapper that writes down, at exit, which
``prefect`` modules were loaded. bench/cli.py measures the time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import typer

from promo.cli.main import app
from promo.local.sandbox import stop_sandbox
from promo.local.sandbox_github import TOKENS_FILE

# Runs `promo ARGS...` as the console script does; at exit writes the loaded prefect modules to the file $1.
WRAPPER = """
import atexit, json, sys
report, sys.argv = sys.argv[1], ["promo", *sys.argv[2:]]
loaded = lambda: sorted(name for name in sys.modules if name.partition(".")[0] == "prefect")
atexit.register(lambda: open(report, "w").write(json.dumps(loaded())))
from promo.cli.main import main
main()
"""


def promo_without_prefect(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command, check it imported nothing of Prefect, and return what it did."""
    report = tmp_path / "prefect-modules.json"
    report.unlink(missing_ok=True)
    command = [sys.executable, "-c", WRAPPER, str(report), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})
    assert json.loads(report.read_text()) == [], f"promo {' '.join(args)} imported Prefect"
    return done


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The promo.yaml of a sandbox made by `promo sandbox`, itself a command that must not import Prefect."""
    directory = tmp_path_factory.mktemp("cli") / "world"
    try:
        made = promo_without_prefect(directory.parent, "sandbox", str(directory))
        assert made.returncode == 0, made.stderr
        yield str(directory / "promo.yaml")
    finally:
        stop_sandbox(directory)


def as_demo(config: str) -> dict[str, str]:
    """The sandbox's releases are on its GitHub stand-in, read with a token of its own: demo's, as promo acts."""
    return {"GITHUB_TOKEN": json.loads((Path(config).parent / TOKENS_FILE).read_text())["demo"]}


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["status"],
        ["status", "--all"],
        ["releases"],
        ["history"],
        ["history", "test"],
        ["metrics"],
        ["trace", "9.9.9"],
    ],
    ids=" ".join,
)
def test_commands_that_run_no_flow_do_not_import_prefect(args, config, tmp_path):
    config_args = ["--config", config] if args != ["--help"] else []
    done = promo_without_prefect(tmp_path, *args, *config_args, env=as_demo(config))
    assert done.returncode == (4 if args[0] == "trace" else 0), done.stderr  # trace 9.9.9: NotFound, one line
    assert done.stderr.count("\n") <= 1, done.stderr


@pytest.mark.parametrize("command", ["status", "releases"])
def test_data_commands_print_json(command, config, tmp_path):
    done = promo_without_prefect(tmp_path, command, "--json", "-c", config, env=as_demo(config))
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    if command == "status":
        assert [row["environment"] for row in printed] == ["dev", "test", "stage", "prod"]
        assert printed[0]["cluster_versions"] == {"preprod": ""} and printed[0]["version"] is None
    else:
        assert printed == []  # the sandbox has no release yet


# Commands that read no promo.yaml (`server` manages the local Prefect server, `relay-github-webhooks` relays every
# app's deliveries: each app's trigger picks its own); every other one takes --config/-c.
NO_CONFIG = {"sandbox", "demo", "server", "relay-github-webhooks"}
# Commands that print data, each of which can print it as JSON.
DATA = {"status", "releases", "pending", "history", "trace", "metrics"}


def options_of_every_command() -> dict[str, set[str]]:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    return {name: {opt for param in command.params for opt in param.opts} for name, command in group.commands.items()}


def test_every_command_that_reads_promo_yaml_takes_config():
    without = {name for name, opts in options_of_every_command().items() if not {"--config", "-c"} <= opts}
    assert without == NO_CONFIG


def test_every_command_that_prints_data_takes_json():
    commands = options_of_every_command()
    assert DATA <= set(commands)
    assert {name for name in DATA if "--json" not in commands[name]} == set()


class _NoGatesApi(BaseHTTPRequestHandler):
    """A Prefect API with no run at all: the filter endpoints answer an empty list, as the real server does."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        known = self.path in ("/api/flow_runs/filter", "/api/flows/filter")
        self.send_response(200 if known else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"[]")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def prefect_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NoGatesApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/api"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.mark.parametrize(
    "args, code, output",
    [
        (["pending"], 0, "no gates waiting on the Prefect server at {api}"),
        (["pending", "--json"], 0, "[]"),
        (["approve", str(uuid.UUID(int=7))], 2, "no gate is waiting with flow run id 00000000-0000-0000-0000-000000000007 on the Prefect server at {api}"),
        (["approve", "--help"], 0, "--override-reason"),
        (["pending", "--help"], 0, "--json"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_pending_and_approve_ask_the_prefect_api_without_importing_prefect(args, code, output, prefect_api, tmp_path):
    env = {"PREFECT_API_URL": prefect_api, "PROMO_HOME": str(tmp_path / "home")}
    done = promo_without_prefect(tmp_path, *args, env=env)
    assert done.returncode == code, done.stderr
    assert output.format(api=prefect_api) in done.stdout + done.stderr  # which server was asked


def test_pending_without_any_prefect_server_is_one_line(tmp_path):
    env = {"PREFECT_API_URL": "", "PROMO_HOME": str(tmp_path / "home"), "PREFECT_HOME": str(tmp_path / "prefect")}
    done = promo_without_prefect(tmp_path, "pending", env=env)
    assert done.returncode == 8 and done.stderr.count("\n") == 1, done.stderr
    assert "no Prefect server to ask about gates" in done.stderr and "`promo server start`" in done.stderr


_INTERLEAVED = """
import sys
from promo.cli.app import app, flow_command

@app.command("other")  # two commands: the app stays a group, as promo's is
def other() -> None:
    pass

@flow_command("interleave")
def interleave() -> None:
    for line in range(3):
        print(f"out {line}")
        sys.stderr.write(f"err {line}\\n")

app(["interleave"])
"""


def test_a_flow_command_s_output_stays_in_order_with_its_log_lines_when_piped():
    """stdout and stderr (Prefect's log lines) piped into one file come out in the order they were written."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}  # as a user's shell has it
    done = subprocess.run(
        [sys.executable, "-c", _INTERLEAVED], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120,
        env=env,
    )  # fmt: skip
    assert done.stdout.splitlines() == ["out 0", "err 0", "out 1", "err 1", "out 2", "err 2"], done.stdout
