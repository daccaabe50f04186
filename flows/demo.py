"""`promo demo`: a sandbox, a real build, and two real gates approved by the demo user."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from flows.gate import decide, waiting_gates
from flows.promote import FLOWS, Promotion
from flows.publish_dev import publish_dev
from promo.approvals import Decision
from promo.config import load_config
from promo.errors import ToolError
from promo.sandbox import create_sandbox
from promo.status import environment_status
from promo.table import print_table

DEMO_APPROVER = "demo"
GATE_APPEARS_WITHIN_SECONDS = 120


def run_demo(directory: Path) -> None:
    sandbox = create_sandbox(directory)
    config_path = str(sandbox.config_path)
    print(f"sandbox: {sandbox.directory} (registry {sandbox.registry_host})")
    print(publish_dev(config_path=config_path).summary())
    for target in ("test", "stage"):
        print(promote_through_gate(target, config_path).summary())
    rows = environment_status(load_config(config_path))
    print_table(
        ["environment", "version", "image tag", "chart digest"],
        [[r.environment, r.version or "-", r.image_tag or "-", r.chart_digest or "-"] for r in rows],
    )


def promote_through_gate(target: str, config_path: str) -> Promotion:
    """Start the promotion, wait until its gate is open, approve it the way `promo approve` does."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["promotion"] = FLOWS[target](config_path=config_path)
        except BaseException as error:  # handed to the main thread, which raises it
            outcome["error"] = error

    worker = threading.Thread(target=run, name=f"promote-{target}")
    worker.start()
    deadline = time.monotonic() + GATE_APPEARS_WITHIN_SECONDS
    while worker.is_alive() and time.monotonic() < deadline:
        gates = waiting_gates(env=target)
        if gates:
            print(f"gate open: {gates[0].app} {gates[0].version} -> {target}; approving as {DEMO_APPROVER}")
            decide(gates[0], Decision(approved=True, approver=DEMO_APPROVER, comment="approved by promo demo"))
            break
        time.sleep(0.2)
    worker.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    if "promotion" not in outcome:
        raise ToolError(f"the promote-{target} gate never opened", "run `promo pending` and look at the flow run's logs")
    return outcome["promotion"]  # type: ignore[return-value]
