"""Only a decision at the gate passes it, on a real server with the deployments `promo setup` registers.

Starting a deployment and resuming a run are different permissions: no parameter of any deployed flow may stand in
for the decision. And a suspended gate, resumed, carries out exactly the plan it showed, or nothing."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
from pathlib import Path
from uuid import UUID, uuid4

import httpx
import pytest
from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    DeploymentFilter,
    DeploymentFilterId,
    LogFilter,
)
from prefect.client.schemas.sorting import ArtifactSort
from prefect.deployments import run_deployment
from prefect.states import AwaitingRetry
from prefect.settings import PREFECT_API_URL, temporary_settings

from promo.deployments.deploy import FLOWS, Outcome, setup_all
from promo.config import load_config
from promo.deployments.notify import notification_automations
from promo.release.gates import WaitingGate, decide, waiting_gates
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


def revision_in(sandbox: Sandbox, env: str) -> str:
    path = manifest_path(env, "preprod", sandbox.app)
    return read_target_revision(git(sandbox.gitops_remote, "show", f"main:{path}"))


def revision_in_test(sandbox: Sandbox) -> str:
    return revision_in(sandbox, "test")


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
@pytest.mark.slow
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


def ended(client, flow_run_id: UUID):
    """The run once it has ended, else None."""
    run = client.read_flow_run(flow_run_id)
    return run if run.state.is_final() else None


def suspended_gate(client, flow_run_id: UUID, app: str, worker) -> WaitingGate:
    """The run's gate into test, once the run has suspended there."""
    def suspended() -> bool:
        return client.read_flow_run(flow_run_id).state.name == "Suspended"

    wait_until(suspended, RUN_SECONDS, "the gate into test", alive=worker.process, log=worker.log)
    gates = [gate for gate in waiting_gates(app=app, env="test") if gate.flow_run_id == flow_run_id]
    assert gates, f"flow run {flow_run_id} suspended, but not at a promo gate into test"
    return gates[0]


def not_applied_record(client, flow_run_id: UUID, app: str) -> tuple[str, str]:
    """The run's gate artifact (its newest version) and its logs on the server, once both say the approval was not
    applied: the run's process ships its last logs as it exits, after the run is marked failed."""
    artifact_filter = ArtifactFilter(
        key=ArtifactFilterKey(any_=[f"gate-{app}-test"]), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
    )

    def said() -> tuple[str, str] | None:
        artifacts = client.read_artifacts(artifact_filter=artifact_filter, sort=ArtifactSort.CREATED_DESC)
        logs = "\n".join(log.message for log in client.read_logs(LogFilter(flow_run_id={"any_": [flow_run_id]})))
        artifact = str(artifacts[0].data) if artifacts else ""
        return (artifact, logs) if "not applied" in artifact and "not applied" in logs else None

    return wait_until(said, RUN_SECONDS, "the gate artifact and the log saying the approval was not applied")


@pytest.mark.integration
@pytest.mark.slow
def test_a_resumed_gate_carries_out_what_it_showed_or_fails_in_one_line(published, sandbox, tmp_path):
    """Suspended at its gate, a run ends its process and starts again from the top when resumed. Approving V1
    after dev moved on to V2 ships V1, with no second gate; approving after the target itself moved fails the run in
    one line and writes nothing, and the run's log, its gate artifact and its failure notice say the approval was
    not applied."""
    client, worker = published
    shown = revision_in(sandbox, "dev")
    first = run_deployment(f"promote-test/{sandbox.app}", timeout=0)
    gate = suspended_gate(client, first.id, sandbox.app, worker)
    newer = run_deployment(f"publish-dev/{sandbox.app}", timeout=RUN_SECONDS, poll_interval=0.5)  # dev moves on
    assert newer.state.is_completed(), tail(worker.log)
    assert revision_in(sandbox, "dev") != shown

    decide(gate, Decision(approved=True, approver="carol", comment="V1 it is"))
    run = wait_until(lambda: ended(client, first.id), RUN_SECONDS, "the run", alive=worker.process, log=worker.log)
    assert run.state.is_completed(), f"{run.state}\n{tail(worker.log)}"
    assert revision_in(sandbox, "test") == shown  # the version the approver saw, not dev's newer one
    assert run.empirical_policy.pause_keys == {"approve-test-1"}  # one gate: the resumed run asked nothing again

    second = run_deployment(f"promote-test/{sandbox.app}", timeout=0)  # dev's newer build, over test's V1
    gate = suspended_gate(client, second.id, sandbox.app, worker)
    set_test_revision_by_hand(sandbox, "0.0.9", tmp_path)  # the target moves while the gate waits
    moved = gitops_head(sandbox)
    decide(gate, Decision(approved=True, approver="carol"))
    run = wait_until(lambda: ended(client, second.id), RUN_SECONDS, "the run", alive=worker.process, log=worker.log)

    one_line = f"test of {sandbox.app} moved from {shown} to 0.0.9 since the gate opened; run promote-test again"
    assert run.state.is_failed() and run.state.message.endswith(f"ConflictError: {one_line}"), run.state
    assert gitops_head(sandbox) == moved and revision_in(sandbox, "test") == "0.0.9"  # test untouched
    artifact, logs = not_applied_record(client, second.id, sandbox.app)
    assert "approved by `carol` (gate): **not applied**, nothing was written." in artifact and one_line in artifact
    assert f"was not applied, nothing was written: {one_line}" in logs
    from tests.integration.test_notify import render  # it imports this module: imported once both are loaded

    config = load_config(sandbox.config_path)
    _, failed = notification_automations(config, uuid4(), [spec.name for spec in FLOWS], ui_url=None)
    notice = render(failed.actions[0].body, client.read_flow_run(second.id), "promote-test")  # what the server sends
    assert one_line in notice and "The approval was not applied: test moved after its gate opened" in notice

    # Started again after it ended, the run never writes what nobody approved. The UI's Retry (an unforced
    # AwaitingRetry) leaves a final state, so the server forgets the run's pause keys: it plans from what runs now and
    # asks again. A forced state change keeps them: the run carries out the plan its one decision was given for, here
    # refused again in the same line, and asks nothing.
    client.set_flow_run_state(second.id, AwaitingRetry(), force=True)
    run = wait_until(lambda: ended(client, second.id), RUN_SECONDS, "the run", alive=worker.process, log=worker.log)
    assert run.state.is_failed() and run.state.message.endswith(f"ConflictError: {one_line}"), run.state
    assert gitops_head(sandbox) == moved

    retried = client.set_flow_run_state(second.id, AwaitingRetry(message="Retry from the UI"), force=False)
    assert retried.status.value == "ACCEPT", retried
    gate = suspended_gate(client, second.id, sandbox.app, worker)
    assert gate.version == revision_in(sandbox, "dev") and gitops_head(sandbox) == moved  # asked anew, nothing written
    decide(gate, Decision(approved=False, approver="carol", comment="not now"))
    run = wait_until(lambda: ended(client, second.id), RUN_SECONDS, "the run", alive=worker.process, log=worker.log)
    assert not run.state.is_completed() and gitops_head(sandbox) == moved, run.state
