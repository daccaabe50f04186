"""`promo demo`: a sandbox, a real build moved dev -> test -> stage -> prod through three real gates
approved by the demo user, and the next dev build that the release starts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from flows.background import GatedRun
from flows.gate import decide
from flows.promote import FLOWS
from flows.publish_dev import publish_dev
from flows.release_prod import release_prod
from promo.approvals import Decision
from promo.config import load_config
from promo.sandbox import create_sandbox
from promo.status import environment_status
from promo.table import print_table

Result = TypeVar("Result")
DEMO_APPROVER = "demo"
GATE_APPEARS_WITHIN_SECONDS = 120


def run_demo(directory: Path) -> None:
    sandbox = create_sandbox(directory)
    config_path = str(sandbox.config_path)
    print(f"sandbox: {sandbox.directory} (registry {sandbox.registry_host})")
    print(publish_dev(config_path=config_path).summary())
    for target in ("test", "stage"):
        print(through_gate(target, lambda flow=FLOWS[target]: flow(config_path=config_path)).summary())
    print(through_gate("prod", lambda: release_prod(config_path=config_path)).summary())
    rows = environment_status(load_config(config_path))
    print_table(
        ["environment", "version", "image tag", "chart digest"],
        [[r.environment, r.version or "-", r.image_tag or "-", r.chart_digest or "-"] for r in rows],
    )


def through_gate(target: str, start: Callable[[], Result]) -> Result:
    """Start a gated flow, wait until its gate into ``target`` is open, approve it the way `promo approve` does."""
    run = GatedRun(start)
    gate = run.gate(target, timeout=GATE_APPEARS_WITHIN_SECONDS)
    print(f"gate open: {gate.app} {gate.version} -> {target}; approving as {DEMO_APPROVER}")
    decide(gate, Decision(approved=True, approver=DEMO_APPROVER, comment="approved by promo demo"))
    return run.join()
