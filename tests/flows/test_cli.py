"""The `promo` command: bad input gets one line naming the cause and the fix, an exit code, and changes nothing."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from ruamel.yaml import YAML

from promo.cli import app as cli_app
from promo.cli import main as cli
from promo.errors import NotFound
from promo.forges.github import RateLimited
from promo.local.sandbox import Sandbox


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def world_snapshot(sandbox: Sandbox) -> dict[str, object]:
    """Every ref of both remotes and every tag in the registry."""
    base = f"http://{sandbox.registry_host}/v2"
    repositories = httpx.get(f"{base}/_catalog").json()["repositories"] or []
    return {
        "app": git(sandbox.app_remote, "for-each-ref"),
        "gitops": git(sandbox.gitops_remote, "for-each-ref"),
        "registry": {repo: sorted(httpx.get(f"{base}/{repo}/tags/list").json()["tags"] or []) for repo in repositories},
    }


def run_promo(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["promo", *args])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    captured = capsys.readouterr()
    return exited.value.code or 0, captured.out, captured.err


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("promo: error: ")]
    assert len(lines) == 1, err
    return lines[0]


def edit_remote(sandbox: Sandbox, remote: Path, path: str, text: str) -> None:
    """Commit one file change to a bare remote, as a person pushing by hand would."""
    work = sandbox.directory / f"edit-{remote.name}"
    if not work.exists():
        subprocess.run(["git", "clone", "-q", str(remote), str(work)], check=True)
    git(work, "pull", "-q")
    (work / path).write_text(text)
    git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", f"edit {path}")
    git(work, "push", "-q")


def set_manifest(sandbox: Sandbox, env: str, transform) -> None:
    cluster = "prod" if env == "prod" else "preprod"
    path = f"registry/environments/{env}/{cluster}/{sandbox.app}.yaml"
    edit_remote(sandbox, sandbox.gitops_remote, path, transform(git(sandbox.gitops_remote, "show", f"main:{path}")))


def write_config(sandbox: Sandbox, change) -> str:
    yaml = YAML()
    data = yaml.load(sandbox.config_path.read_text())
    change(data)
    path = sandbox.directory / "changed.yaml"
    with path.open("w") as out:
        yaml.dump(data, out)
    return str(path)


@pytest.fixture()
def with_dev_version(sandbox: Sandbox, monkeypatch, capsys) -> Sandbox:
    code, out, err = run_promo(monkeypatch, capsys, "publish-dev", "--config", str(sandbox.config_path))
    assert code == 0, err
    return sandbox


def test_publish_then_promote_and_approve_from_the_cli(with_dev_version, monkeypatch, capsys, background):
    sandbox = with_dev_version
    config = str(sandbox.config_path)
    monkeypatch.setenv("PROMO_CONFIG", config)
    run = background(lambda: run_promo(monkeypatch, capsys, "promote-test"))
    run.gate("test")
    code, out, _ = run_promo(monkeypatch, capsys, "pending")
    assert code == 0 and "test" in out and sandbox.app in out
    assert out.startswith("gates waiting on the Prefect server at http") and "promote-test" in out  # which gate kind
    code, out, err = run_promo(monkeypatch, capsys, "pending", "--json", "-c", config)
    assert code == 0, err
    assert [(gate["app"], gate["env"]) for gate in json.loads(out)] == [(sandbox.app, "test")]
    code, out, err = run_promo(monkeypatch, capsys, "approve", "--env", "test", "--as", "carol", "--comment", "ok")
    assert code == 0, err
    assert " on http" in out, out  # the server it decided on
    assert run.join()[0] == 0
    code, out, _ = run_promo(monkeypatch, capsys, "status")
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["dev"][2] == rows["test"][2] and rows["dev"][2].startswith("0.1.0-rc.")
    assert rows["test"][4].startswith("sha256:") and rows["stage"][2] == "-"


CASES = {
    # name: (args after the config, how to break the world, expected words, exit code)
    "unknown environment": (["approve", "--env", "qa"], None, "unknown environment 'qa'; use one of: dev, test, stage, prod", 2),
    "env with shell characters": (["approve", "--env", "prod;rm"], None, "unknown environment 'prod;rm'", 2),
    "malformed sha": (["publish-dev", "--sha", "xyz; rm -rf /"], None, "is not a git commit SHA", 2),
    "option-like branch": (["publish-dev", "--branch", "--upload-pack=x"], None, "is not a valid git branch name", 2),
    "sha not on the branch": (["publish-dev", "--sha", "abcdef1234567"], None, "is not on branch main", 2),
    "no version in the source env": (["promote-test", "--yes"], None, "has no version in dev yet", 4),
    "manifest without targetRevision": (
        ["promote-test", "--yes"],
        lambda s: set_manifest(s, "dev", lambda t: t.replace('targetRevision: ""', "revisionHistoryLimit: 3")),
        "no targetRevision",
        3,
    ),
    "manifest that is a list": (["promote-test", "--yes"], lambda s: set_manifest(s, "dev", lambda t: "- a\n- b\n"), "", 3),
    "manifest with broken YAML": (["promote-test", "--yes"], lambda s: set_manifest(s, "dev", lambda t: t + "  : [\n"), "", 3),
    "targetRevision that is not SemVer": (
        ["promote-test", "--yes"],
        lambda s: set_manifest(s, "dev", lambda t: t.replace('targetRevision: ""', "targetRevision: main")),
        "the targetRevision of hello in dev 'main' is not SemVer 2.0",
        2,
    ),
    "chart missing from the registry": (
        ["promote-test", "--yes"],
        lambda s: set_manifest(s, "dev", lambda t: t.replace('targetRevision: ""', "targetRevision: 9.9.9-rc.abcdef1")),
        "chart hello 9.9.9-rc.abcdef1 is not in",
        4,
    ),
    "Chart.yaml without a version": (
        ["publish-dev"],
        lambda s: edit_remote(s, s.app_remote, "charts/hello/Chart.yaml", "apiVersion: v2\nname: hello\n"),
        "Chart.yaml has no version",
        3,
    ),
    "Chart.yaml version that is not SemVer": (
        ["publish-dev"],
        lambda s: edit_remote(s, s.app_remote, "charts/hello/Chart.yaml", "apiVersion: v2\nname: hello\nversion: '1.2'\n"),
        "Chart.yaml version '1.2' is not SemVer 2.0",
        2,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_changes_nothing(case, sandbox, monkeypatch, capsys):
    args, breaks, expected, exit_code = CASES[case]
    if breaks is not None:
        breaks(sandbox)
    before = world_snapshot(sandbox)
    code, _, err = run_promo(monkeypatch, capsys, *args[:1], "--config", str(sandbox.config_path), *args[1:])
    line = error_line(err)
    assert expected in line
    assert "; " in line, "the line names the fix after the cause"
    assert code == exit_code, line
    assert world_snapshot(sandbox) == before


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.update(app="../x"), "app '../x' is not a DNS label"),
        (lambda d: d.update(app="a b"), "is not a DNS label"),
        (lambda d: d.update(app="team/app"), "is not a DNS label"),
        (lambda d: d.pop("chart"), "chart: Field required"),
        (lambda d: d["registry"].update(auth="basic") if "registry" in d else d.update(registry={"auth": "basic"}),
         "set PROMO_REGISTRY_USERNAME and PROMO_REGISTRY_PASSWORD"),
    ],
)
def test_bad_config_is_one_line_and_changes_nothing(change, expected, sandbox, monkeypatch, capsys):
    monkeypatch.delenv("PROMO_REGISTRY_USERNAME", raising=False)
    monkeypatch.delenv("PROMO_REGISTRY_PASSWORD", raising=False)
    config = write_config(sandbox, change)
    before = world_snapshot(sandbox)
    code, _, err = run_promo(monkeypatch, capsys, "publish-dev", "--config", config)
    assert expected in error_line(err)
    assert code == 2
    assert world_snapshot(sandbox) == before


def through_pull_requests(data) -> None:
    """stage and prod written through pull requests on GitHub, each gate an approver's review (approval: pull-request)."""
    data["forge"] = {"kind": "github", "api_url": "http://127.0.0.1:9", "repository": "sandbox/hello"}
    data["gitops"]["repository"] = "sandbox/gitops"
    for env in data["environments"]:
        if env["name"] in ("stage", "prod"):
            env["write"] = "pull-request"


@pytest.mark.parametrize(
    ("args", "env"), [(["promote-stage"], "stage"), (["release-prod"], "prod"), (["rollback", "stage"], "stage")]
)
def test_yes_is_refused_where_the_gate_is_a_review_and_nothing_changes(args, env, sandbox, monkeypatch, capsys):
    """--yes used to be ignored there: the run waited for a review its user was told they had given."""
    config = write_config(sandbox, through_pull_requests)
    before = world_snapshot(sandbox)
    code, _, err = run_promo(monkeypatch, capsys, *args, "--yes", "--config", config)
    line = error_line(err)
    assert f"--yes cannot pass the gate into {env}: it is an approving review of the pull request" in line
    assert f"`promo approve --env {env} --github-token`" in line and code == 2
    assert world_snapshot(sandbox) == before


def test_missing_and_malformed_config(tmp_path, monkeypatch, capsys):
    code, _, err = run_promo(monkeypatch, capsys, "status", "--config", str(tmp_path / "nope.yaml"))
    assert code == 2 and "not found; pass --config PATH, set PROMO_CONFIG" in error_line(err)
    broken = tmp_path / "promo.yaml"
    broken.write_text("app: [unclosed\n")
    monkeypatch.setenv("PROMO_CONFIG", str(broken))
    code, _, err = run_promo(monkeypatch, capsys, "status")
    assert code == 2 and "is not valid YAML at line" in error_line(err)


def test_registry_auth_failure_fails_at_once_without_the_password_and_changes_nothing(
    sandbox, basic_auth_registry_server, monkeypatch, capsys
):
    marker = "S3CRET-MARKER-PASSWORD"
    monkeypatch.setenv("PROMO_REGISTRY_USERNAME", basic_auth_registry_server.username)
    monkeypatch.setenv("PROMO_REGISTRY_PASSWORD", marker)
    host = basic_auth_registry_server.host

    def to_auth_registry(data):
        data["registry"] = {"auth": "basic"}
        data["image"]["repository"] = f"{host}/hello"
        data["chart"]["repository"] = f"{host}/charts"

    config = write_config(sandbox, to_auth_registry)
    before = world_snapshot(sandbox)
    started = time.monotonic()
    code, out, err = run_promo(monkeypatch, capsys, "publish-dev", "--config", config)
    assert time.monotonic() - started < 10, "a 401 is not retried"
    line = error_line(err)
    assert code == 5 and "check the registry credentials" in line
    assert marker not in out + err
    assert world_snapshot(sandbox) == before


def promo_process(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`promo ARGS` in a process of its own, as a person runs it, against the test Prefect server."""
    from prefect.settings import PREFECT_API_URL

    environment = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), **env}
    command = [sys.executable, "-c", "from promo.cli.main import main; main()", *args]
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)


REFUSED_IN_A_FLOW = {
    # args after the config: the cause that must reach the console once
    ("hotfix", "v9.9.9"): "release tag v9.9.9 does not exist; pick a release from `promo releases`",
    ("promote-test", "--yes"): "has no version in dev yet",
}


@pytest.mark.parametrize("args", sorted(REFUSED_IN_A_FLOW), ids=" ".join)
def test_a_refusal_inside_a_flow_run_is_one_line_on_the_console(args, sandbox):
    cause = REFUSED_IN_A_FLOW[args]
    quiet = promo_process(*args, "--config", str(sandbox.config_path), PREFECT_LOGGING_LEVEL="WARNING")
    assert quiet.returncode == 4
    # Prefect's own note, at exit on a loaded machine, that it is still sending the run's events is not the refusal.
    shown = [line for line in quiet.stderr.splitlines() if "EventsWorker - Still processing items" not in line]
    assert shown == [error_line(quiet.stderr)] and cause in quiet.stderr
    # At Prefect's default level the run's progress lines show, but the failed task and flow say nothing of the cause.
    default = promo_process(*args, "--config", str(sandbox.config_path))
    assert default.returncode == 4 and default.stderr.count(cause) == 1, default.stderr
    assert "ERROR" not in default.stderr and "Failed(" not in default.stderr, default.stderr


def record(message: str, exc: BaseException | None = None, level: int = logging.ERROR) -> logging.LogRecord:
    exc_info = (type(exc), exc, None) if exc else None
    return logging.LogRecord("prefect.task_runs", level, __file__, 1, message, None, exc_info)


@pytest.mark.parametrize(
    ("log", "shown"),
    [
        (record("Task run failed with exception: NotFound(...)", NotFound("gone", "look")), False),
        (record("Encountered exception during execution: RateLimited(...)", RateLimited("slow", None, 1.0)), False),
        (record("Finished in state Failed('Task run encountered an exception NotFound: gone; look')"), False),
        (record("Finished in state Failed('Flow run encountered an exception: InputError: no')", level=20), False),
        # Not promo's answers: a crash keeps its record and traceback, and other lines stay as they are.
        (record("Encountered exception during execution: ValueError('x')", ValueError("x")), True),
        (record("Finished in state Failed('Flow run encountered an exception: ValueError: NotFound: x')"), True),
        (record("Finished in state Completed()", level=logging.INFO), True),
        (record("NotFound: not a state line"), True),
    ],
)
def test_the_console_drops_only_the_records_of_promo_errors(log, shown):
    assert cli_app._PromoErrorsOnlyOnce().filter(log) is shown


@pytest.mark.parametrize("asked", [False, True])
def test_a_commands_flow_run_emits_heartbeats_only_when_asked(asked, monkeypatch):
    """Prefect's heartbeat thread holds each run's end up to 1 s: a command's run goes without, unless the user set
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY (Prefect's own value, loaded at import, then applies)."""
    from prefect import flow
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, get_current_settings, temporary_settings

    seen = []

    @flow
    def probe() -> None:
        seen.append(get_current_settings().flows.heartbeat_frequency)

    if asked:
        monkeypatch.setenv(cli_app.HEARTBEAT_ENV, "90")
    # As a command starts: Prefect's settings loaded with heartbeats on (this suite turns them off for speed).
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 90}):
        with cli_app._without_heartbeats_unless_asked():
            probe()
        assert get_current_settings().flows.heartbeat_frequency == 90  # only the command's runs go without

    assert seen == [90 if asked else None]
