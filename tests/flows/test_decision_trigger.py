"""The watcher's event trigger on a real Prefect server: what `promo setup` registers for watch-pull-requests, read
back from the server, and a review delivered through the relay starting a run of that deployment within seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID, uuid4

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL

from promo.config import PromoConfig, validate_config
from promo.deployments.deploy import FLOWS, deploy_all, ensure_work_pool
from promo.deployments.github_relay import Relay, prefect_sender
from promo.forges.github_webhooks import delivery_headers
from promo.local.processes import free_port
from promo.local.standin_github import Webhook
from promo.release.gates import PrefectApi
from tests.core.test_github_webhooks import serving
from tests.fixtures.github_standin import standin_world
from tests.fixtures.gitrepos import ROOT, GitRemote, application

SECRET = b"the webhook's secret"
WATCHER = next(spec for spec in FLOWS if spec.name == "watch-pull-requests")
RUN_DEADLINE_SECONDS = 60.0  # a triggered run is created in about a second on an idle machine


def config(tmp_path: Path, app: str, *, pull_requests: bool = True, repository: str = "Acme/GitOps") -> PromoConfig:
    stage = {"write": "pull-request", "approvers": ["alice"]} if pull_requests else {}
    return validate_config(
        {
            "app": app,
            "app_repo": {"url": (tmp_path / "app.git").as_uri()},
            "gitops": {"url": (tmp_path / "gitops.git").as_uri(), "repository": repository},
            "chart": {"path": "charts/hello", "repository": "registry.invalid/charts"},
            "image": {"repository": "registry.invalid/hello"},
            "environments": [
                {"name": "test", "clusters": ["preprod"]},
                {"name": "stage", "clusters": ["preprod"], **stage},
                {"name": "prod", "clusters": ["prod"], **stage},
            ],
            "forge": {"kind": "github"},
        },
        "the test's promo.yaml",
    )


@pytest.fixture
def app() -> Iterator[str]:
    """A fresh app name; its watcher deployment and the deployment's automation are removed after the test, so the
    session's server holds no schedule of it for the tests that follow."""
    name = f"w-{uuid4().hex[:8]}"
    ensure_work_pool()
    yield name
    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(f"watch-pull-requests/{name}")
        except ObjectNotFound:
            return
        client.delete_resource_owned_automations(f"prefect.deployment.{deployment.id}")
        client.delete_deployment(deployment.id)


def watcher_automations(app: str) -> tuple[object, list]:
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(f"watch-pull-requests/{app}")
        return deployment, client.read_resource_related_automations(f"prefect.deployment.{deployment.id}")


def test_setup_gives_the_watcher_a_trigger_on_the_apps_pull_requests_besides_its_schedule(tmp_path: Path, app: str):
    for _ in range(2):  # setup again: the same one trigger, not a second
        [outcome] = deploy_all(config(tmp_path, app), flows=[WATCHER])
        assert "every minute" in outcome.detail and "github.pull_request.closed" in outcome.detail
    deployment, [automation] = watcher_automations(app)
    assert [type(schedule.schedule).__name__ for schedule in deployment.schedules] == ["IntervalSchedule"]
    trigger = automation.trigger
    assert trigger.expect == {"github.pull_request_review.submitted", "github.pull_request.closed"}
    assert trigger.match.model_dump() == {
        "github.repository": "acme/gitops",
        "github.head_ref": [f"promo/{app}/stage/*", f"promo/{app}/prod/*"],
    }
    assert (trigger.posture, trigger.threshold, trigger.within.total_seconds()) == ("Reactive", 1, 0)
    [action] = automation.actions
    assert (action.type, action.deployment_id, action.parameters) == ("run-deployment", deployment.id, None)


def test_an_app_without_pull_requests_gets_no_trigger(tmp_path: Path, app: str):
    [outcome] = deploy_all(config(tmp_path, app, pull_requests=False), flows=[WATCHER])
    assert outcome.detail == "every minute"
    assert watcher_automations(app)[1] == []


def test_a_review_delivered_through_the_relay_starts_the_watcher(tmp_path: Path, app: str):
    deploy_all(config(tmp_path, app), flows=[WATCHER])
    deployment, _ = watcher_automations(app)
    relay = Relay(SECRET, prefect_sender(PrefectApi.from_environment()))

    def deliver(head_ref: str, repository: str = "Acme/GitOps") -> None:
        body = json.dumps({
            "action": "submitted", "review": {"state": "approved"}, "repository": {"full_name": repository},
            "pull_request": {"number": 12, "head": {"ref": head_ref}},
        }).encode()  # fmt: skip
        assert relay.handle(delivery_headers("pull_request_review", str(uuid4()), SECRET, body), body).status == 202

    # the server evaluates events in the order it takes them: the two that must start nothing go first
    deliver("promo/someone-else/stage/1.0.0")  # another app's promotion: not this watcher's
    deliver(f"promo/{app}/stage/1.0.0", repository="Acme/other-repo")  # another repository
    deliver(f"promo/{app}/stage/0.2.0-rc.abc1234")
    runs = triggered_runs(deployment.id)
    assert len(runs) == 1, f"{len(runs)} runs of watch-pull-requests/{app} were triggered, not 1"
    assert runs[0].parameters == {"app": app}


def triggered_runs(deployment_id: UUID) -> list:
    """The runs of the deployment an automation created, once there is one (the schedule makes runs of its own)."""
    deadline = time.monotonic() + RUN_DEADLINE_SECONDS
    while True:
        with get_client(sync_client=True) as client:
            of_it = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
            runs = client.read_flow_runs(deployment_filter=of_it)
        triggered = [run for run in runs if run.created_by is not None and run.created_by.type == "AUTOMATION"]
        if triggered or time.monotonic() > deadline:
            return triggered
        time.sleep(0.2)


@pytest.fixture
def relay_url() -> Iterator[str]:
    """`promo relay-github-webhooks` as it runs, on a free port, sending to the test's Prefect server."""
    with serving(Relay(SECRET, prefect_sender(PrefectApi.from_environment()))) as url:
        yield url


def test_a_review_on_the_github_stand_in_starts_the_watcher_through_the_relay(
    tmp_path: Path, gitops_remote: GitRemote, relay_url: str, app: str
):
    """The sandbox's path end to end: the stand-in delivers, signed, the relay checks and sends, the trigger fires."""
    (tmp_path / "webhook-secret").write_bytes(SECRET)
    deploy_all(config(tmp_path, app, repository="sandbox/gitops"), flows=[WATCHER])
    deployment, _ = watcher_automations(app)
    hook = Webhook(url=relay_url, secret_file=tmp_path / "webhook-secret")
    with standin_world(tmp_path, gitops_remote, [hook]) as github:
        branch = f"promo/{app}/stage/0.2.0-rc.abc1234"
        github.push_branch(branch, {f"{ROOT}/stage/preprod/{app}.yaml": application(app, "stage", "0.2.0")})
        pull = github.as_user("promo").open(branch, "main", title=f"promote({app})", body="the gate page")
        github.as_user("alice").review(pull.number, "APPROVE")
        runs = triggered_runs(deployment.id)
    assert len(runs) == 1 and runs[0].parameters == {"app": app}


def test_the_command_relays_deliveries_to_the_server_it_names(tmp_path: Path):
    """`promo relay-github-webhooks` as an operator runs it: its own process, the secret in a file, stopped by PID."""
    (tmp_path / "secret").write_bytes(SECRET + b"\n")
    port = free_port()
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PROMO_HOME": str(tmp_path / "home")}
    command = [str(Path(sys.executable).parent / "promo"), "relay-github-webhooks", "--secret-file",
               str(tmp_path / "secret"), "--port", str(port)]  # fmt: skip
    relay = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert relay.stdout is not None
        first = relay.stdout.readline()  # printed once it listens (the pipe blocks until then, or EOF on exit)
        assert first.startswith(f"relaying GitHub webhooks at http://127.0.0.1:{port}/ to "), first
        body = json.dumps({"action": "closed", "repository": {"full_name": "Acme/GitOps"},
                           "pull_request": {"number": 3, "head": {"ref": "promo/x/stage/1.0.0"}}}).encode()  # fmt: skip
        answer = httpx.post(f"http://127.0.0.1:{port}/", content=body, timeout=60,
                            headers=delivery_headers("pull_request", str(uuid4()), SECRET, body))  # fmt: skip
        assert (answer.status_code, answer.text) == (202, "sent github.pull_request.closed for Acme/GitOps#3\n")
    finally:
        relay.terminate()
        relay.wait(timeout=30)
