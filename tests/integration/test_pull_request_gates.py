"""A promotion into a ``write: pull-request`` environment under a deployment, end to end: a real Prefect server, the
deployments `promo setup` registers, a process worker, and the sandbox's GitHub stand-in (`promo sandbox
--pull-requests`). The run suspends at its pull request, holding no process; cancelled from Prefect, the
`watch-pull-requests` deployment closes its pull request; started again, an approver's review, the watcher resumes
it, the worker runs it again and it merges with the review in the landed commit."""

from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID

import httpx
import pytest
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import State

from promo.clients import gitops_pull_requests
from promo.config import load_config
from promo.deployments.deploy import setup_all
from promo.flows.gate import approving_as
from promo.flows.promote import promote_test
from promo.flows.publish_dev import publish_dev
from promo.forges.github import GivenToken
from promo.local.sandbox import Sandbox
from promo.local.sandbox_github import TOKENS_FILE
from promo.release.pull_gate import PULL_REQUEST_GATE_TAG, promotion_branch
from tests.integration.conftest import PrefectServer, stop, tail, wait_until
from tests.integration.test_gate_parameters import RUN_SECONDS, ended, forget, git, revision_in

WATCHER = "watch-pull-requests"


def token(sandbox: Sandbox, login: str) -> str:
    return str(json.loads((sandbox.directory / TOKENS_FILE).read_text())[login])


def watch_by_hand(client: SyncPrefectClient, app: str) -> None:
    """The watcher runs when the test says (its deployment started by hand), not at its schedule's minute."""
    deployment = client.read_deployment_by_name(f"{WATCHER}/{app}")
    for schedule in client.read_deployment_schedules(deployment.id):
        client.delete_deployment_schedule(deployment.id, schedule.id)
    scheduled = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])))
    its_own = DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
    for run in client.read_flow_runs(flow_run_filter=scheduled, deployment_filter=its_own):
        client.delete_flow_run(run.id)


def watch(app: str, worker) -> None:
    run = run_deployment(f"{WATCHER}/{app}", timeout=RUN_SECONDS, poll_interval=0.5)
    assert run.state.is_completed(), f"{run.state}\n{tail(worker.log)}"


def suspended(client: SyncPrefectClient, flow_run_id: UUID, worker) -> FlowRun:
    def at_gate() -> FlowRun | None:
        run = client.read_flow_run(flow_run_id)
        assert not run.state.is_final(), f"{run.state}\n{tail(worker.log)}"
        return run if run.state.name == "Suspended" else None

    return wait_until(at_gate, RUN_SECONDS, "the pull request gate", alive=worker.process, log=worker.log)


def holds_no_process(run: FlowRun) -> bool:
    """The run's process (the worker records its PID) has exited: gone, or a zombie its worker has not reaped."""
    pid = str(run.infrastructure_pid).rsplit(":", 1)[-1]
    try:
        status = Path(f"/proc/{int(pid)}/status").read_text()
    except (FileNotFoundError, ValueError):
        return run.infrastructure_pid is not None
    return "\nState:\tZ" in status


def all_pull_requests(sandbox: Sandbox) -> list[int]:
    answer = httpx.get(f"{sandbox.github_url}/repos/sandbox/gitops/pulls", params={"state": "all"},
                       headers={"Authorization": f"Bearer {token(sandbox, 'demo')}"})  # fmt: skip
    answer.raise_for_status()
    return sorted(int(pull["number"]) for pull in answer.json())


def comments(sandbox: Sandbox, number: int) -> list[str]:
    state = json.loads((sandbox.directory / "standin-github" / "github-state.json").read_text())["gitops"]
    return [comment["body"] for comment in state["comments"] if comment["number"] == number]


@pytest.mark.integration
@pytest.mark.slow
def test_a_suspended_pull_request_gate_is_closed_when_cancelled_and_merged_when_reviewed(
    prefect_server: PrefectServer, start_worker, github_sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox, app = github_sandbox, github_sandbox.app
    monkeypatch.setenv("GITHUB_TOKEN", token(sandbox, "demo"))  # promo acts as demo, here and on the worker
    config = load_config(sandbox.config_path)
    reviewer = gitops_pull_requests(config, GivenToken(token(sandbox, "alice")))
    with temporary_settings(updates={PREFECT_API_URL: prefect_server.url}), get_client(sync_client=True) as client:
        registered = setup_all(sandbox.config_path)
        worker = start_worker("promo", GITHUB_TOKEN=token(sandbox, "demo"))
        try:
            watch_by_hand(client, app)
            publish_dev(config_path=str(sandbox.config_path))
            with approving_as("carol"):
                version = promote_test(config_path=str(sandbox.config_path)).version
            branch = promotion_branch(app, "stage", version)

            # Suspended at its pull request: no process holds it, its tags name the pull request.
            first = run_deployment(f"promote-stage/{app}", timeout=0)
            run = suspended(client, first.id, worker)
            assert run.state.type == StateType.PAUSED
            pull = reviewer.find_open(branch, "main")
            assert pull is not None
            assert {PULL_REQUEST_GATE_TAG, f"app:{app}", "env:stage", f"pr:{pull.number}"} <= set(run.tags)
            wait_until(lambda: holds_no_process(client.read_flow_run(first.id)), RUN_SECONDS, "the run's exit")

            # Cancelled from Prefect (the UI's Cancel): ended on the server alone; the watcher closes its PR.
            client.set_flow_run_state(first.id, State(type=StateType.CANCELLING))
            assert client.read_flow_run(first.id).state.type == StateType.CANCELLED
            assert reviewer.get(pull.number).state == "open"
            watch(app, worker)
            closed = reviewer.get(pull.number)
            assert (closed.state, closed.merged) == ("closed", False)
            said = f"flow run {run.name} ({run.id}) ended Cancelled"
            assert any(said in body for body in comments(sandbox, pull.number))
            assert reviewer.branch_sha(branch) is None

            # Started again: a new pull request; an approver's review; the watcher resumes it and the worker merges.
            second = run_deployment(f"promote-stage/{app}", timeout=0)
            suspended(client, second.id, worker)
            again = reviewer.find_open(branch, "main")
            assert again is not None and again.number != pull.number
            watch(app, worker)
            assert client.read_flow_run(second.id).state.name == "Suspended"  # no review yet: left suspended
            review = reviewer.review(again.number, "APPROVE", body="ship it", commit=again.head_sha)
            watch(app, worker)
            done = wait_until(lambda: ended(client, second.id), RUN_SECONDS, "the resumed run", alive=worker.process,
                              log=worker.log)  # fmt: skip
            assert done.state.is_completed(), f"{done.state}\n{tail(worker.log)}"
            assert done.empirical_policy.pause_keys == {"approve-stage-1"}  # suspended once, resumed once

            assert revision_in(sandbox, "stage") == version
            message = git(sandbox.gitops_remote, "log", "-1", "--format=%B", "main")
            assert f"Approved-By: alice (GitHub review {review.id})" in message
            assert "Approval-Comment: ship it" in message
            merged = reviewer.get(again.number)
            assert merged.merged and merged.merge_commit_sha == git(sandbox.gitops_remote, "rev-parse", "main").strip()
            assert all_pull_requests(sandbox) == [pull.number, again.number]  # none opened again on resume
        finally:
            stop(worker.process)
            forget(client, registered)
