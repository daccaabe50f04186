"""Superseded gates: once a version lands in an environment, gates still waiting to move an older one there end.

Such a gate's approval could never be carried out any more (the target moved since it opened, flows/gate_plan.py), so
leaving it open only invites a decision that changes nothing. Each one is cancelled on the Prefect server with the
reason ``superseded by 0.2.0-rc.x in test``, whether it waits paused (its local process watches for that and ends in
one line, flows/gate.py) or suspended under a deployment (no process waits; the server's state is all there is). Its
log and its gate artifact say so, and `promo pending` no longer lists it. A gate for a newer version stays.
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate, LogCreate
from prefect.context import FlowRunContext
from prefect.states import Cancelled

from promo.clients import gitops_pull_requests
from promo.config import PromoConfig
from promo.errors import PromoError
from promo.flows.gate import prefect_api
from promo.flows.runinfo import run_logger
from promo.release.gates import WaitingGate, superseded_gates, waiting_gates
from promo.release.pull_gate import waiting_pull_requests


def supersede_waiting_gates(
    config: PromoConfig, env: str, version: str, landed_by: str | None = None
) -> list[WaitingGate]:
    """Cancel every gate waiting to move an older ``config.app`` version into ``env``, now that ``version`` landed
    there (call it after the write); the gates it ended. A gate that stopped waiting meanwhile is left alone: if it
    was approved, its run refuses to write over what landed (``refuse_if_moved``)."""
    context = FlowRunContext.get()
    this_run = context.flow_run.id if context is not None and context.flow_run is not None else None
    reason = f"superseded by {version} in {env}"
    try:
        waiting = waiting_gates(app=config.app, env=env, api=prefect_api())
        waiting = [gate for gate in waiting if gate.flow_run_id != this_run]
        ended = [gate for gate in superseded_gates(waiting, version) if _cancel(gate, reason)]
    except (PromoError, httpx.HTTPError) as error:
        # The write is done and stays: older gates left open cannot write over it either (refuse_if_moved).
        run_logger().warning("Gates waiting to move an older version into %s were not cancelled (%s): "
                             "reject them with `promo approve --reject`", env, error)  # fmt: skip
        return []
    if config.environment(env).write == "pull-request":
        close_superseded_pull_requests(config, env, version, landed_by)
    for gate in ended:
        run_logger().info("Cancelled the gate of %s %s into %s (flow run %s): %s",
                          gate.app, gate.version, env, gate.flow_run_name, reason)  # fmt: skip
    return ended


def close_superseded_pull_requests(config: PromoConfig, env: str, version: str, landed_by: str | None) -> None:
    """Close the open pull requests moving an older version into ``env``, naming what landed (``landed_by``: the
    pull request that did). A run waiting on one then ends in one line: its pull request was closed."""
    reason = f"Superseded by {version} in {env}" + (f" ({landed_by})" if landed_by else "") + "; nothing was written."
    try:
        pulls = gitops_pull_requests(config)
        waiting = waiting_pull_requests(pulls, config.app, [env], config.gitops.branch)
        for gate in superseded_gates(waiting, version):
            pulls.close(int(gate.pull_request["number"]), reason)  # type: ignore[call-overload]
            run_logger().info("Closed pull request %s: %s", gate.pull_request["html_url"], reason)
    except PromoError as error:  # the write is done and stays; an older pull request cannot merge over it
        run_logger().warning("Pull requests moving an older version into %s were not closed (%s): close them by "
                             "hand", env, error)  # fmt: skip


def _cancel(gate: WaitingGate, reason: str) -> bool:
    """Cancel ``gate``'s run if it still waits, then leave the reason in its log and on its gate artifact; False when
    it no longer waited. Cancelled at once, forced: Cancelling asks a worker or runner to end the run's process, and
    none holds a local pause (its own process watches for Cancelled, flows/gate.py) or a suspended run (no process)."""
    run_id = gate.flow_run_id
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run_id).state
        if state is None or not state.is_paused():
            return False
        client.set_flow_run_state(run_id, Cancelled(message=reason), force=True)
        line = f"{gate.app} {gate.version} into {gate.env}: gate cancelled, {reason}; nothing was written"
        log = LogCreate(name="promo.gate", level=30, message=line, timestamp=datetime.now(UTC), flow_run_id=run_id)
        client.create_logs([log])
        client.create_artifact(
            ArtifactCreate(
                key=f"gate-{gate.app}-{gate.env}",
                type="markdown",
                data=f"**{gate.app} {gate.version}** into {gate.env}: **cancelled**, {reason}. Nothing was written.",
                description=f"Gate cancelled: {reason}",
                flow_run_id=run_id,
            )
        )
    return True
