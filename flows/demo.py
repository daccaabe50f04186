"""`promo demo`: a sandbox, a real build moved dev -> test -> stage -> prod through three real gates
approved by the demo user, and the next dev build that the release starts. Then a build that comes up Degraded
in dev: its failed verification, the rollback of dev through its gate, and dev's history. Every step prints the
verdict of the version it deployed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from flows.background import GatedRun
from flows.gate import decide
from flows.promote import FLOWS
from flows.publish_dev import publish_dev
from flows.release_prod import release_prod
from flows.rollback import rollback
from promo.app_repo import read_chart_yaml
from promo.approvals import Decision
from promo.clients import app_mirror
from promo.config import PromoConfig, load_config
from promo.errors import VerificationFailed
from promo.history import TABLE_HEADERS, app_history, table_row
from promo.sandbox import Sandbox, create_sandbox, degrade_version
from promo.status import environment_status
from promo.table import print_table
from promo.versions import rc_version
from tasks.verify import verify_environment

Result = TypeVar("Result")
DEMO_APPROVER = "demo"
GATE_APPEARS_WITHIN_SECONDS = 120


def run_demo(directory: Path) -> None:
    sandbox = create_sandbox(directory)
    config_path = str(sandbox.config_path)
    config = load_config(config_path)
    print(f"sandbox: {sandbox.directory} (registry {sandbox.registry_host})")
    print(publish_dev(config_path=config_path).summary())
    print_verdict(config, "dev")
    for target in ("test", "stage"):
        print(through_gate(target, lambda flow=FLOWS[target]: flow(config_path=config_path)).summary())
        print_verdict(config, target)
    print(through_gate("prod", lambda: release_prod(config_path=config_path)).summary())
    print_verdict(config, "prod")
    print_verdict(config, "dev")  # the next build the release started, once it is there
    rows = environment_status(config)
    print_table(
        ["environment", "version", "image tag", "chart digest"],
        [[r.environment, r.version or "-", r.image_tag or "-", r.chart_digest or "-"] for r in rows],
    )
    roll_back_a_degraded_build(sandbox, config)


def roll_back_a_degraded_build(sandbox: Sandbox, config: PromoConfig) -> None:
    """A build that comes up Degraded in dev fails its verification; dev goes back to its last verified version."""
    config_path = str(sandbox.config_path)
    mirror = app_mirror(config)
    commit = mirror.commit_empty(config.app_repo.branch, "promo demo: a build that comes up Degraded")
    degraded = rc_version(str(read_chart_yaml(mirror, commit, config.chart.path)["version"]), commit)
    degrade_version(sandbox.directory, degraded)  # before it is published: it is Degraded from its first look
    print(f"\n{degraded} will come up Degraded in the sandbox; publishing it to dev")
    try:
        print(publish_dev(sha=commit, config_path=config_path).summary())
    except VerificationFailed as failed:  # a publish that verifies stops here, with the one line
        print(f"promo: error: {failed}")
    print_verdict(config, "dev")
    print(through_gate("dev", lambda: rollback(env="dev", config_path=config_path)).summary())
    print_verdict(config, "dev")
    print("\nhistory of dev (promo history dev):")
    print_table(TABLE_HEADERS, [table_row(change) for change in app_history(config, "dev")])


def print_verdict(config: PromoConfig, env: str) -> None:
    """The verdict on the newest change in ``env``: the one recorded already, else it is verified now."""
    newest = app_history(config, env)[0]
    # The task's body: the demo runs it outside any flow run, where a task run would only warn about its logs.
    verdict = verify_environment.fn(config, env, newest.version or "", newest.commit)
    print(f"  {verdict.summary() if verdict else f'{env} is not verified (no verify: in promo.yaml)'}")


def through_gate(target: str, start: Callable[[], Result]) -> Result:
    """Start a gated flow, wait until its gate into ``target`` is open, approve it the way `promo approve` does."""
    run = GatedRun(start)
    gate = run.gate(target, timeout=GATE_APPEARS_WITHIN_SECONDS)
    print(f"gate open: {gate.app} {gate.version} -> {target}; approving as {DEMO_APPROVER}")
    decide(gate, Decision(approved=True, approver=DEMO_APPROVER, comment="approved by promo demo"))
    return run.join()
