"""Each gated flow carries out the plan its gate showed when it resumes after that gate (flows/gate_plan.py), on a
real sandbox and Prefect server. The resume itself, under a deployment and a worker, is in
tests/integration/test_gate_parameters.py; here ``opened_gate`` hands the flow the plan a resumed run reads back."""

from __future__ import annotations

import pytest

import promo.flows.release_prod as release_module
import promo.flows.rollback as rollback_module
from promo.config import load_config
from promo.flows.gate import approving_as
from promo.flows.release_prod import plan_release, release_prod
from promo.flows.rollback import plan_rollback, rollback
from promo.release.gate_plan import GatePlan
from tests.flows.test_integrity import write_by_hand
from tests.flows.test_release import stage_a_build, target_revision
from tests.flows.test_rollback import publish


def test_a_resumed_release_ships_the_rc_its_gate_showed_not_what_stage_runs_by_then(sandbox, monkeypatch):
    staged = stage_a_build(sandbox)
    shown = plan_release(load_config(staged.config), "stage", "prod")
    write_by_hand(sandbox, "stage", "0.1.0-rc.fedcba9")  # stage moved on while the gate waited (no such chart)
    monkeypatch.setattr(release_module, "opened_gate", lambda target: shown if target == "prod" else None)

    with approving_as("alice"):
        released = release_prod(config_path=staged.config)

    assert (released.rc, released.version) == (staged.rc, shown.version) == (shown.built_as, "0.1.0")
    assert target_revision(sandbox, "prod") == "0.1.0"


def test_a_resumed_rollback_puts_back_the_version_its_gate_showed(sandbox, monkeypatch):
    good = publish(sandbox)
    bad = publish(sandbox, degraded=True)
    shown = plan_rollback(load_config(sandbox.config_path), "dev", None)
    assert (shown.version, dict(shown.plan.current)) == (good.version, {"preprod": bad.version})

    def replanned(*args: object) -> GatePlan:
        raise AssertionError("a resumed rollback planned again from the world")

    monkeypatch.setattr(rollback_module, "opened_gate", lambda target: shown if target == "dev" else None)
    monkeypatch.setattr(rollback_module, "plan_rollback", replanned)
    with approving_as("carol"):
        rolled_back = rollback(env="dev", to=bad.version, config_path=str(sandbox.config_path))

    assert (rolled_back.version, rolled_back.rolled_back) == (good.version, bad.version)
    assert target_revision(sandbox, "dev") == good.version


@pytest.mark.parametrize("target", ["test", "prod"])
def test_a_run_outside_a_deployment_never_reads_a_plan_back(target):
    """Only a deployment's run suspends and starts again from the top; a local run (or a flow's function called
    outside any run) plans from the world."""
    from promo.flows.gate_plan import opened_gate

    assert opened_gate(target) is None
