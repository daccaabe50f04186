"""`promo demo` (what `make demo` runs) end to end on a sandbox with its GitHub stand-in: test approved on the Prefect
form, stage and prod through pull requests approved by alice's review, the Degraded build rolled back. Without the
local server's worker (here: none) it ends by saying how to leave a promotion waiting instead."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from promo.config import load_config
from promo.flows.demo import run_demo
from promo.local.sandbox import stop_sandbox
from promo.reports.history import app_history

REVIEWED = r"pull request open: (http://127\.0\.0\.1:\d+/sandbox/gitops/pull/\d+); approved by alice \(GitHub review (\d+)\)"


@pytest.mark.slow  # a whole pipeline with two releases' worth of flows: about a minute
def test_the_demo_moves_a_build_to_prod_with_stage_and_prod_approved_by_alices_review(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PROMO_HOME", str(tmp_path / "home"))  # no local server or worker: not the machine's
    monkeypatch.setenv("GITHUB_TOKEN", "")  # the demo sets demo's token for itself; restored after
    directory = tmp_path / "demo"
    try:
        run_demo(directory)
    finally:
        stop_sandbox(directory)
    out = capsys.readouterr().out

    reviews = re.findall(REVIEWED, out)
    assert len(reviews) == 2, out  # stage, then prod
    for _, review in reviews:
        assert f"Approved-By: alice (GitHub review {review})" in out
    assert "approving as demo" in out and "rolled hello in dev back from" in out
    config = load_config(directory / "promo.yaml")
    landed = {env: app_history(config, env)[0].approver for env in ("stage", "prod")}
    assert landed == {env: f"alice (GitHub review {review})" for env, (_, review) in zip(("stage", "prod"), reviews)}
    assert "to leave a promotion waiting in the Prefect UI: `promo server start --with-worker`" in out
