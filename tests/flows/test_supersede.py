"""Superseded gates, on a real Prefect server: once a version lands in an environment, a gate still waiting to move an
older one there ends, cancelled, and says by what; a gate for a newer version stays."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest
from prefect.client.orchestration import get_client

from promo.errors import ApprovalRejected
from promo.flows.gate import approving_as
from promo.flows.promote import promote_test
from promo.release.gates import WaitingGate, superseded_gates, waiting_gates
from tests.flows.test_release import target_revision
from tests.flows.test_rollback import publish


def gate_at(version: str) -> WaitingGate:
    return WaitingGate(uuid4(), "run", "promote-test", "hello", "test", version, datetime.now(UTC), "")


def test_a_landed_version_supersedes_older_and_equal_ranked_gates_but_not_newer_ones():
    older, sibling, newer, release = (
        gate_at("0.1.0-rc.abc1234"), gate_at("0.2.0-rc.fff0000"), gate_at("0.3.0-rc.abc1234"), gate_at("0.2.0")
    )  # fmt: skip
    same, unreadable = gate_at("0.2.0-rc.abc1234"), gate_at("?")
    gates = [older, sibling, newer, release, same, unreadable]
    assert superseded_gates(gates, "0.2.0-rc.abc1234") == [older, sibling]
    assert superseded_gates(gates, "0.2.0") == [older, sibling, same]


def test_a_paused_gate_is_cancelled_when_a_newer_version_lands_and_its_process_ends_in_one_line(sandbox, background):
    config = str(sandbox.config_path)
    older = publish(sandbox)
    waiting = background(lambda: promote_test(config_path=config))
    gate = waiting.gate("test")
    assert gate.version == older.version
    newer = publish(sandbox)
    with approving_as("carol"):
        promote_test(config_path=config)
    assert target_revision(sandbox, "test") == newer.version

    reason = f"superseded by {newer.version} in test"
    with pytest.raises(ApprovalRejected) as ended:
        waiting.join()
    assert str(ended.value) == (
        f"the gate of hello {older.version}: dev -> test was cancelled: {reason}; "
        "nothing was written; start the promotion again if it should still move"
    )
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(gate.flow_run_id).state
    assert (state.type.value, state.message) == ("CANCELLED", reason)
    assert gate.flow_run_id not in {waiting_gate.flow_run_id for waiting_gate in waiting_gates(env="test")}
    assert target_revision(sandbox, "test") == newer.version
    assert reason in gate_artifact(gate)


def gate_artifact(gate: WaitingGate) -> str:
    with get_client(sync_client=True) as client:
        wanted = {"key": {"any_": [f"gate-{gate.app}-{gate.env}"]}, "flow_run_id": {"any_": [str(gate.flow_run_id)]}}
        response = client.request("POST", "/artifacts/filter", json={"artifacts": wanted})
    return "\n".join(artifact["data"] for artifact in response.json())
