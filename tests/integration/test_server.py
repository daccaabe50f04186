"""promo on a real Prefect server (PostgreSQL), driven the way operators drive it: `promo setup`, a process worker,
`promo notify-push` from CI, a gate that suspends (no process held while it waits) and is approved through the API."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from uuid import UUID

import pytest
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    DeploymentFilter,
    DeploymentFilterName,
)
from prefect.client.schemas.sorting import FlowRunSort
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings
from ruamel.yaml import YAML

from promo.release.gates import decide, waiting_gates
from promo.tasks.limits import RELEASE, limit_name
from promo.release.approvals import Decision
from promo.local.sandbox import Sandbox
from promo.versions import short_sha
from tests.integration.conftest import PROJECT, PrefectServer, tail, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RUN_SECONDS = 90  # a deadline, not a cost: on an idle machine a run takes 3-6 s


def git(remote: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(remote), *args], check=True, capture_output=True, text=True).stdout


def target_revision(sandbox: Sandbox, env: str) -> str:
    text = git(sandbox.gitops_remote, "show", f"main:registry/environments/{env}/preprod/{sandbox.app}.yaml")
    return YAML(typ="safe").load(text)["spec"]["source"]["targetRevision"]


def documented_event_post() -> str:
    """The shell block docs/operations.md gives CI for posting git.push without promo."""
    text = (PROJECT / "docs" / "operations.md").read_text(encoding="utf-8")
    after_marker = text.split("<!-- tests/integration/test_server.py runs the next block -->", 1)[1]
    return after_marker.split("```bash\n", 1)[1].split("\n```", 1)[0]


def flow_runs_of(client, deployment: str):
    """Runs of ``flow/deployment`` started by events or by hand, oldest first."""
    name = deployment.split("/", 1)[1]
    flow_name = deployment.split("/", 1)[0]
    runs = client.read_flow_runs(
        deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name])), sort=FlowRunSort.EXPECTED_START_TIME_ASC
    )
    flows = {run.flow_id: client.read_flow(run.flow_id).name for run in runs}
    return [run for run in runs if flows[run.flow_id] == flow_name and not run.auto_scheduled]  # not the nightly


def read_run(client, flow_run_id: UUID):
    return client.read_flow_run(flow_run_id)


def processes_of_flow_run(flow_run_id: UUID) -> list[int]:
    """PIDs whose environment names this flow run: the process a worker started to run it."""
    marker = f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            pids.append(int(entry))
    return pids



def test_setup_push_publish_and_a_suspended_gate(prefect_server: PrefectServer, start_worker, promo, sandbox):
    config = str(sandbox.config_path)
    with temporary_settings(updates={PREFECT_API_URL: prefect_server.url}), get_client(sync_client=True) as client:
        # setup registers everything, and a second run changes nothing it should keep
        first = promo("setup", "--config", config)
        assert first.returncode == 0, first.stderr
        for line in (
            "created  work pool promo (process)",
            "created  config promo-config/hello",
            f"created  limit {limit_name('hello', 'test')}",
            f"created  limit {limit_name('hello', RELEASE)}",
            "created  secret promo-registry-password",
            "created  secret github-token",
            "created  deployment publish-dev/hello",
            "created  deployment promote-test/hello",
            "created  deployment promote-stage/hello",
        ):
            assert line in first.stdout, first.stdout
        # the worker starts the engine itself, not a workspace supervisor that then starts it (~1.4 s per run)
        template = client.read_work_pool("promo").base_job_template
        assert template["variables"]["properties"]["command"]["default"] == "python -m prefect.engine"
        publish = client.read_deployment_by_name("publish-dev/hello")
        assert publish.parameters == {"app": "hello"}  # no path: the run reads the config setup stored
        assert [(s.slug, s.active) for s in publish.schedules] == [("nightly", False)]
        # what operators change by hand survives a second setup: a secret's value, a nightly schedule switched on
        Secret(value="a-real-token").save("github-token", overwrite=True)
        client.update_deployment_schedule(publish.id, publish.schedules[0].id, active=True)
        second = promo("setup", "--config", config)
        assert second.returncode == 0, second.stderr
        assert "created" not in second.stdout, second.stdout
        assert "updated  deployment publish-dev/hello" in second.stdout
        assert "exists   config promo-config/hello" in second.stdout  # promo.yaml unchanged: the block too
        assert Secret.load("github-token").get() == "a-real-token"
        assert client.read_global_concurrency_limit_by_name(limit_name("hello", "stage")).limit == 1
        publish = client.read_deployment_by_name("publish-dev/hello")
        assert [(s.slug, s.active) for s in publish.schedules] == [("nightly", True)]
        client.update_deployment_schedule(publish.id, publish.schedules[0].id, active=False)

        worker = start_worker("promo")

        # CI reports pushes: a feature branch publishes nothing, main publishes that very commit to dev
        sha = git(sandbox.app_remote, "rev-parse", "main").strip()
        ignored = promo("notify-push", "--sha", sha, "--branch", "feature-x", "--config", config)
        assert ignored.returncode == 0 and "no publish" in ignored.stdout, ignored.stderr
        sent = promo("notify-push", "--sha", sha, "--branch", "main", "--config", config)
        assert sent.returncode == 0 and "will run" in sent.stdout, sent.stderr
        bad = promo("notify-push", "--sha", "not-a-sha", "--branch", "main", "--config", config)
        assert bad.returncode == 2 and "not a git commit SHA" in bad.stderr

        runs = wait_until(lambda: flow_runs_of(client, "publish-dev/hello"), 30, "a publish-dev run from git.push")
        run = wait_until(
            lambda: (r := read_run(client, runs[0].id)).state.is_final() and r, RUN_SECONDS, "publish-dev to finish",
            alive=worker.process, log=worker.log,
        )  # fmt: skip
        assert run.state.is_completed(), f"{run.state}\n{tail(worker.log)}"
        assert run.parameters["sha"] == sha and run.parameters["branch"] == "main"
        version = f"0.1.0-rc.{short_sha(sha)}"
        assert target_revision(sandbox, "dev") == version
        assert len(flow_runs_of(client, "publish-dev/hello")) == 1  # the feature-x push started nothing

        # the raw API call docs/operations.md gives CI, for a hotfix-* branch
        git(sandbox.app_remote, "branch", "hotfix-1.2", "main")
        posted = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", documented_event_post()], capture_output=True, text=True, timeout=30,
            env={**prefect_server.env(), "APP": "hello", "SHA": sha, "BRANCH": "hotfix-1.2"},
        )  # fmt: skip
        assert posted.returncode == 0, posted.stderr
        hotfix = wait_until(
            lambda: [r for r in flow_runs_of(client, "publish-dev/hello") if r.parameters.get("branch") == "hotfix-1.2"],
            30, "a publish-dev run from the documented curl",
        )[0]  # fmt: skip
        hotfix = wait_until(
            lambda: (r := read_run(client, hotfix.id)).state.is_final() and r, RUN_SECONDS, "the hotfix publish",
            alive=worker.process, log=worker.log,
        )  # fmt: skip
        assert hotfix.state.is_completed(), f"{hotfix.state}\n{tail(worker.log)}"
        assert hotfix.parameters["sha"] == sha

        # promote-test from the API: it suspends at its gate and no process waits with it
        promotion = run_deployment("promote-test/hello", timeout=0)
        wait_until(
            lambda: read_run(client, promotion.id).state.name == "Suspended", RUN_SECONDS, "promote-test to suspend",
            alive=worker.process, log=worker.log,
        )  # fmt: skip
        wait_until(lambda: not processes_of_flow_run(promotion.id), 15, "the suspended run's process to exit")
        assert target_revision(sandbox, "test") != version

        gate = wait_until(lambda: waiting_gates(app="hello", env="test"), 10, "the gate in `promo pending`")[0]
        assert gate.flow_run_id == promotion.id and gate.version == version
        decide(gate, Decision(approved=True, approver="carol", comment="smoke tests green"))

        done = wait_until(
            lambda: (r := read_run(client, promotion.id)).state.is_final() and r, RUN_SECONDS, "promote-test to finish",
            alive=worker.process, log=worker.log,
        )  # fmt: skip
        assert done.state.is_completed(), f"{done.state}\n{tail(worker.log)}"
        assert target_revision(sandbox, "test") == version
        message = git(sandbox.gitops_remote, "log", "-1", "--format=%B", "main")
        assert "Approved-By: carol" in message and "Promoted-From: dev" in message
        assert f"Flow-Run: promote-test/{done.name} {done.id}" in message
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["gate-hello-test"])))
        assert artifacts and "approved by `carol`" in artifacts[0].data
        history = [state.name for state in client.read_flow_run_states(promotion.id)]
        assert "Suspended" in history and history[-1] == "Completed", history


def test_a_worker_without_promo_yaml_runs_the_app_from_the_config_on_the_server(
    prefect_server: PrefectServer, start_worker, promo, sandbox, tmp_path
):
    """A worker on another host or in a fresh pod: no promo.yaml in its working directory or HOME, no $PROMO_CONFIG,
    and the file setup read is gone. The deployment names the app; its run reads the config setup stored."""
    operator = tmp_path / "operator"  # the machine `promo setup` ran on
    operator.mkdir()
    shutil.copy(sandbox.config_path, operator / "promo.yaml")
    with temporary_settings(updates={PREFECT_API_URL: prefect_server.url}), get_client(sync_client=True) as client:
        setup = promo("setup", "--config", str(operator / "promo.yaml"))
        assert setup.returncode == 0 and "config promo-config/hello" in setup.stdout, setup.stderr
        shutil.rmtree(operator)
        hidden = sandbox.config_path.rename(sandbox.directory / "promo.yaml.elsewhere")
        try:
            home = tmp_path / "empty-home"
            home.mkdir()
            worker = start_worker("promo", HOME=str(home))
            run = run_deployment("publish-dev/hello", timeout=RUN_SECONDS, poll_interval=0.5)
            assert run.state.is_completed(), f"{run.state}\n{tail(worker.log)}"
            assert run.parameters == {"app": "hello"}
            assert target_revision(sandbox, "dev") == f"0.1.0-rc.{short_sha(git(sandbox.app_remote, 'rev-parse', 'main'))}"
            assert not [*home.rglob("promo.yaml"), *worker.workdir.rglob("promo.yaml")]

            # the app's stored config deleted: the next run fails at its start, naming the fix
            client.delete_block_document(client.read_block_document_by_name("hello", "promo-config").id)
            failed = run_deployment("promote-test/hello", timeout=RUN_SECONDS, poll_interval=0.5)
            assert failed.state.is_failed(), failed.state
            assert "no promo config for app hello on this server; run `promo setup" in failed.state.message
        finally:
            hidden.rename(sandbox.config_path)


def test_the_environment_lock_holds_its_one_slot(prefect_server: PrefectServer):
    from promo.tasks.limits import ensure_environment_limits, environment_lock
    from promo.errors import ConflictError, NotFound

    with temporary_settings(updates={PREFECT_API_URL: prefect_server.url}):
        # strict, as under a deployment: no limit is an error, not a lock that locks nothing
        with pytest.raises(NotFound, match="promo setup"):
            with environment_lock("lockapp", "prod", timeout_seconds=2, create_missing=False):
                pass
        assert ensure_environment_limits("lockapp", ["prod"]) == [("promo-lockapp-prod", True)]
        assert ensure_environment_limits("lockapp", ["prod"]) == [("promo-lockapp-prod", False)]
        with environment_lock("lockapp", "prod", timeout_seconds=5):
            with pytest.raises(ConflictError, match="another run held prod"):
                with environment_lock("lockapp", "prod", timeout_seconds=1.5):
                    pass
        with pytest.raises(KeyError):  # the body's own errors pass through untouched, and the slot is given back
            with environment_lock("lockapp", "prod", timeout_seconds=5):
                raise KeyError("body")
        with environment_lock("lockapp", "prod", timeout_seconds=5):
            pass
        with environment_lock("localapp", "dev", timeout_seconds=5):  # a local run makes its limit on first use
            pass
        assert ensure_environment_limits("localapp", ["dev"]) == [("promo-localapp-dev", False)]
