"""A gate suspended under a worker (no process waits for it) ends, cancelled, when a newer version lands in its
environment: on a real server with the deployments `promo setup` registers and a process worker."""

from __future__ import annotations

import pytest
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter
from prefect.deployments import run_deployment

from promo.clients import app_mirror
from promo.config import load_config
from promo.release.approvals import Decision
from promo.release.gates import decide, waiting_gates
from tests.integration.test_gate_parameters import (  # noqa: F401 (published: a fixture this test uses)
    RUN_SECONDS,
    ended,
    published,
    revision_in,
    suspended_gate,
)
from tests.integration.conftest import tail, wait_until


@pytest.mark.integration
@pytest.mark.slow
def test_a_suspended_gate_is_cancelled_when_a_newer_version_lands(published, sandbox):
    client, worker = published
    older = revision_in(sandbox, "dev")
    waiting = run_deployment(f"promote-test/{sandbox.app}", timeout=0)
    gate = suspended_gate(client, waiting.id, sandbox.app, worker)
    assert gate.version == older

    sha = app_mirror(load_config(sandbox.config_path)).commit_empty("main", "a newer build")
    build = run_deployment(
        f"publish-dev/{sandbox.app}", parameters={"sha": sha}, timeout=RUN_SECONDS, poll_interval=0.5
    )
    assert build.state.is_completed(), tail(worker.log)
    newer = revision_in(sandbox, "dev")
    promotion = run_deployment(f"promote-test/{sandbox.app}", timeout=0)
    decide(suspended_gate(client, promotion.id, sandbox.app, worker), Decision(approved=True, approver="carol"))
    run = wait_until(
        lambda: ended(client, promotion.id), RUN_SECONDS, "the promotion", alive=worker.process, log=worker.log
    )
    assert run.state.is_completed(), f"{run.state}\n{tail(worker.log)}"
    assert revision_in(sandbox, "test") == newer != older

    reason = f"superseded by {newer} in test"
    state = client.read_flow_run(waiting.id).state
    assert (state.type.value, state.message) == ("CANCELLED", reason)
    assert waiting.id not in {pending.flow_run_id for pending in waiting_gates(app=sandbox.app, env="test")}
    its_own = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[waiting.id]))
    artifacts = client.read_artifacts(artifact_filter=its_own)
    assert any(reason in str(artifact.data) for artifact in artifacts if artifact.key == f"gate-{sandbox.app}-test")
    logs = [log.message for log in client.read_logs(LogFilter(flow_run_id={"any_": [waiting.id]}))]
    assert any(reason in line for line in logs), logs
    assert revision_in(sandbox, "test") == newer  # the cancelled run never came back to write
