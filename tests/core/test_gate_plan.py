"""What a gate showed, kept with its run: it reads back as it was stored, and a target that moved since is refused in
one line (flows/gate_plan.py carries it out in the flows)."""

from __future__ import annotations

import pytest

from promo.errors import ConflictError
from promo.gitops.repo import ManifestChange, Plan
from promo.release.gate_plan import GatePlan, moved_since_gate
from promo.release.readiness import Readiness

V1 = "0.2.0-rc.abc1234"
SHOWN = {"preprod": "0.1.0-rc.def5678"}


def planned(current: dict[str, str] = SHOWN, **changes: object) -> GatePlan:
    change = ManifestChange("environments/test/preprod/hello.yaml", "a: 1\n", "a: 2\n")
    plan = Plan((change,), "-a\n+a\n", False, current)
    fields = dict(source="dev", target="test", version=V1, chart_digest="sha256:ab12", plan=plan)
    return GatePlan(**{**fields, **changes})


def test_a_stored_plan_reads_back_as_the_gate_showed_it():
    shown = planned(
        readiness=Readiness(("0.2.0-rc.abc1234 failed verification in dev: down",), failed=True),
        built_as="0.2.0-rc.abc1234",
        headline="Roll back **hello**",
    )
    assert GatePlan.from_json(shown.to_json()) == shown
    assert GatePlan.from_json(planned().to_json()) == planned()  # defaults too


@pytest.mark.parametrize("stored", ["", "{}", '{"version": "1"}', "[1]", '{"plan": 1, "readiness": 2}'])
def test_a_stored_plan_that_is_no_plan_is_refused_in_one_line(stored):
    with pytest.raises(ConflictError, match=r"cannot be read back from the run.*; start the run again"):
        GatePlan.from_json(stored)


def test_a_target_that_moved_since_the_gate_opened_is_refused_in_the_one_line():
    moved = moved_since_gate("hello", planned(), {"preprod": "0.0.9"}, rerun="promote-test")
    assert str(moved) == (
        "test of hello moved from 0.1.0-rc.def5678 to 0.0.9 since the gate opened; run promote-test again"
    )
    empty = moved_since_gate("hello", planned({"preprod": ""}), {"preprod": "0.0.9"}, rerun="promote-test")
    assert str(empty) == "test of hello moved from <none> to 0.0.9 since the gate opened; run promote-test again"


def test_each_moved_cluster_is_named_and_unmoved_ones_pass():
    shown = planned({"preprod": "0.1.0", "edge": ""})
    assert moved_since_gate("hello", shown, {"preprod": "0.1.0", "edge": ""}, rerun="promote-test") is None
    assert moved_since_gate("hello", shown, {"preprod": V1, "edge": V1}, rerun="promote-test") is None  # already there
    moved = moved_since_gate("hello", shown, {"preprod": "0.1.1", "edge": "", "new": "0.1.0"}, rerun="release-prod")
    assert str(moved) == (
        "test of hello moved from 0.1.0 to 0.1.1 in preprod, from <not shown> to 0.1.0 in new since the gate opened; "
        "run release-prod again"
    )
