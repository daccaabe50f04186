"""Only a decision at the gate passes it, on a real server with the deployments `promo setup` registers.

Starting a deployment and resuming a run are different permissions: no parameter of any deployed flow may stand in
for the decision. And a suspended gate's stored answer is reused only while the target still is what was shown."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
from pathlib import Path
from uuid import UUID

import httpx
import pytest
from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.deployments import run_deployment
from prefect.input.run_input import keyset_from_paused_state
from prefect.settings import PREFECT_API_URL, temporary_settings

from promo.deployments.deploy import FLOWS, Outcome, setup_all
from promo.flows.gate import decide, waiting_gates
from promo.release.approvals import Decision
from promo.gitops.manifests import manifest_path, read_target_revision, set_target_revision
from promo.local.sandbox import Sandbox
from tests.integration.conftest import BIN, PrefectServer, stop, tail, wait_until

RUN_SECONDS = 90  # a deadline, not a cost: on an idle machine a run reaches its gate in 3-6 s

# Every parameter a deployed flow may take. A new one must be added here by hand, and this list must never hold a
# name that could decide a gate: starting a run is not approving it.
ALLOWED_PARAMETERS = {"app", "config_path", "sha", "branch", "tag", "part", "env", "to"}
APPROVAL_LIKE = re.compile(r"approv|decision|decide|skip|gate|yes|force|bypass|accept|reject", re.IGNORECASE)


def test_no_deployed_flow_takes_a_parameter_that_could_decide_a_gate():
    assert not [name for name in ALLOWED_PARAMETERS if APPROVAL_LIKE.search(name)]
    for spec in FLOWS:
        flow = getattr(importlib.import_module(spec.module), spec.function)
        assert isinstance(flow, Flow), spec
        parameters = set(flow.parameters.properties)
        assert parameters <= ALLOWED_PARAMETERS, f"{spec.name} takes {sorted(parameters - ALLOWED_PARAMETERS)}"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def gitops_head(sandbox: Sandbox) -> str:
    return git(sandbox.gitops_remote, "rev-parse", "main").strip()


def revision_in_test(sandbox: Sandbox) -> str:
    path = manifest_path("test", "preprod", sandbox.app)
    return read_target_revision(git(sandbox.gitops_remote, "show", f"main:{path}"))


def set_test_revision_by_hand(sandbox: Sandbox, version: str, workdir: Path) -> None:
    """Another writer (a person, a rollback) changes test's manifest in its own clone and pushes."""
    clone = workdir / "by-hand"
    subprocess.run(["git", "clone", "-q", str(sandbox.gitops_remote), str(clone)], check=True)
    path = clone / manifest_path("test", "preprod", sandbox.app)
    path.write_text(set_target_revision(path.read_text(), version))
    identity = ["-c", "user.name=someone else", "-c", "user.email=someone@example.com"]
    git(clone, *identity, "commit", "-q", "-am", f"test: {sandbox.app} back to {version} by hand")
    git(clone, "push", "-q", "origin", "HEAD:main")


def forget(client, registered: list[Outcome]) -> None:
    """Delete what setup created here, and the runs of those deployments, so the next test finds the server as it
    was (test_server.py expects its `promo setup` to create everything, and counts the runs of its deployments)."""
    for outcome in reversed([outcome for outcome in registered if outcome.status == "created"]):
        if outcome.kind == "deployment":
            deployment = client.read_deployment_by_name(outcome.name)
            its_runs = DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
            for run in client.read_flow_runs(deployment_filter=its_runs):
                client.delete_flow_run(run.id)
            client.delete_deployment(deployment.id)
        elif outcome.kind == "limit":
            client.delete_global_concurrency_limit_by_name(outcome.name)
        elif outcome.kind == "secret":
            client.delete_block_document(client.read_block_document_by_name(outcome.name, "secret").id)
        elif outcome.kind == "config":  # promo-config/<app>
            block_type, name = outcome.name.split("/")
            client.delete_block_document(client.read_block_document_by_name(name, block_type).id)
        elif outcome.kind == "work pool":
            client.delete_work_pool(outcome.name)



@pytest.fixture()
def published(prefect_server: PrefectServer, start_worker, sandbox):
    """What `promo setup` registers, a process worker on its pool, and one build published to dev: promote-test has
    work to gate. Afterwards the worker is stopped (it would recreate its pool) and the registrations are deleted."""
    with temporary_settings(updates={PREFECT_API_URL: prefect_server.url}), get_client(sync_client=True) as client:
        registered = setup_all(sandbox.config_path)
        worker = start_worker("promo")
        try:
            build = run_deployment(f"publish-dev/{sandbox.app}", timeout=RUN_SECONDS, poll_interval=0.5)
            assert build.state.is_completed(), tail(worker.log)
            yield client, worker
        finally:
            stop(worker.process)
            forget(client, registered)


def start_with_cli(server: PrefectServer, deployment: str, name: str, value: object) -> tuple[UUID | None, str]:
    """`prefect deployment run DEPLOYMENT --param NAME=VALUE`: the run's id, or None and why it was refused."""
    started = subprocess.run(
        [str(BIN / "prefect"), "deployment", "run", deployment, "--param", f"{name}={json.dumps(value)}"],
        env=server.env(), capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    output = started.stdout + started.stderr
    if started.returncode != 0:
        return None, output
    return UUID(re.search(r"UUID: ([0-9a-f-]{36})", output).group(1)), output


def start_with_api(server: PrefectServer, deployment_id: UUID, name: str, value: object) -> tuple[UUID | None, str]:
    """The REST call itself, with the parameter schema's enforcement switched off for this run as the API allows."""
    body = {"parameters": {name: value}, "enforce_parameter_schema": False}
    response = httpx.post(f"{server.url}/deployments/{deployment_id}/create_flow_run", json=body, timeout=30)
    if response.is_client_error:
        return None, response.text
    response.raise_for_status()
    return UUID(response.json()["id"]), response.text


def at_gate_or_ended(client, flow_run_id: UUID):
    """The run once it is suspended at its gate or has ended, else None."""
    run = client.read_flow_run(flow_run_id)
    return run if run.state.is_final() or run.state.name == "Suspended" else None


@pytest.mark.integration
def test_no_parameter_passes_a_gate(prefect_server: PrefectServer, published, sandbox):
    """The breach as it was reported, `prefect deployment run ... --param approve_as=alice`, its cousins, and the
    same through the REST API with schema enforcement off: each is refused or stops at the gate; nothing is written."""
    client, worker = published
    deployment = f"promote-test/{sandbox.app}"
    deployment_id = client.read_deployment_by_name(deployment).id
    before = gitops_head(sandbox)
    starts = {
        "the CLI": lambda name, value: start_with_cli(prefect_server, deployment, name, value),
        "the REST API": lambda name, value: start_with_api(prefect_server, deployment_id, name, value),
    }
    tried = {"approve_as": "alice", "approved": True, "decision": "approve"}  # the allow-list test covers the rest
    for name, value in tried.items():
        for how, start in starts.items():
            run_id, output = start(name, value)
            if run_id is None:  # refused before any run exists: the flow has no such parameter
                assert name in output, output
                continue
            what = f"promote-test started through {how} with {name}={value}"
            run = wait_until(
                lambda: at_gate_or_ended(client, run_id), RUN_SECONDS, what, alive=worker.process, log=worker.log
            )
            assert not run.state.is_completed(), f"{what} passed the gate: {run.state}\n{output}"
            assert gitops_head(sandbox) == before, f"{what} changed the GitOps repository"
    assert revision_in_test(sandbox) == ""


@pytest.mark.integration
def test_a_suspended_gate_asks_again_when_the_target_moved_while_it_waited(published, sandbox, tmp_path):
    """The approver saw test run nothing; while the gate waited, test was set by hand. Their approval was for a
    change from another state, so the resumed run must ask again instead of writing."""
    client, worker = published
    promotion = run_deployment(f"promote-test/{sandbox.app}", timeout=0)
    wait_until(lambda: client.read_flow_run(promotion.id).state.name == "Suspended", RUN_SECONDS, "the gate")
    shown = waiting_gates(app=sandbox.app, env="test")
    assert [gate.flow_run_id for gate in shown] == [promotion.id]
    first_form = keyset_from_paused_state(client.read_flow_run(promotion.id).state)

    set_test_revision_by_hand(sandbox, "0.0.9", tmp_path)
    moved = gitops_head(sandbox)
    decide(shown[0], Decision(approved=True, approver="carol", comment="nothing runs in test yet"))

    def asks_again_or_ends():
        asks = waiting_gates(app=sandbox.app, env="test")  # paused runs only: seen, its run is suspended again
        run = client.read_flow_run(promotion.id)  # read after the gates, so it is not the state from before the pause
        return (run.state.is_final() or asks) and run

    run = wait_until(asks_again_or_ends, RUN_SECONDS, "promote-test to ask again", alive=worker.process, log=worker.log)
    assert run.state.name == "Suspended", f"{run.state}\n{tail(worker.log)}"
    assert keyset_from_paused_state(run.state) != first_form  # a fresh gate, not the answered one
    assert gitops_head(sandbox) == moved and revision_in_test(sandbox) == "0.0.9"  # the approval wrote nothing
