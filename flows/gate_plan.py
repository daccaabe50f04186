"""What a gate showed, kept with its run, so that an approval is carried out as given or not at all.

Under a deployment a gate suspends the run, and the run starts again from the top when resumed (flows/gate.py). Read
again by then, the source may run a version nobody was shown, and the target may have moved. So the plan a gate
shows is stored with the run (a flow-run input keyed by the gate's target) before the gate opens, and a run whose
gate has opened reads it back instead of the world (``opened_gate``). After the decision, paused or resumed alike,
the target is read once more: if it moved since the gate opened, the approval is not applied, the run fails in one
line and nothing is written (``approve``). The write after that compares against the same state, on every push.

The stored plan decides nothing: only the answer submitted to the gate passes it (flows/gate.py), and the plan is
read back only for a gate the server records as opened in this run. A run retried after it ended (the UI's Retry:
the server forgets a run's opened gates as it leaves a final state) plans from the world and opens its gate anew; a
forced state change keeps them, and the run carries out the plan its one decision was given for, or fails as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.context import FlowRunContext
from prefect.runtime import flow_run

from promo.config import PromoConfig
from promo.errors import ConflictError, TransientError
from promo.flows.gate import approval_request, gate_key, wait_for_approval
from promo.flows.runinfo import run_logger
from promo.release.approvals import Decision
from promo.release.gate_plan import GatePlan, moved_since_gate
from promo import windows
from promo.release.gates import NOT_APPLIED_TAG
from promo.gitops.controls import Freeze
from promo.release.readiness import Readiness
from promo.tasks.gitops import plan_environment_version, read_freeze

PLAN_KEY_PREFIX = "promo-plan-"


def plan_key(target: str) -> str:
    """The flow-run input holding what the gate into ``target`` showed."""
    return f"{PLAN_KEY_PREFIX}{target}"


def opened_gate(target: str) -> GatePlan | None:
    """The plan this run's gate into ``target`` showed, when that gate has opened already (the run was resumed
    after it); None otherwise, and the caller plans from what the world holds now."""
    run = _deployed_run()
    if run is None or not _gate_opened(run, target):
        return None
    with _prefect_api("read the plan its gate showed"), get_client(sync_client=True) as client:
        try:
            stored = client.read_flow_run_input(run.id, plan_key(target))
        except httpx.HTTPStatusError as error:
            if error.response.status_code != 404:
                raise
            raise ConflictError(
                f"the gate into {target} opened in this run, but the plan it showed is not stored with the run, "
                "so its approval was not applied",
                f"run {flow_run.get_flow_name()} again: its gate shows the change from what runs now",
            ) from None
    planned = GatePlan.from_json(stored)
    run_logger().info("Resumed after the gate into %s: carrying out the plan it showed, %s", target, planned.title)
    return planned


def approve(config: PromoConfig, planned: GatePlan) -> Decision:
    """Ask for a decision on ``planned`` at its gate (the plan kept with the run first) and return it once the target
    still runs what the gate showed; otherwise the approval is not applied and the run fails (``refuse_if_moved``)."""
    request = approval_request(
        config,
        planned.plan,
        source=planned.source,
        target=planned.target,
        version=planned.version,
        chart_digest=planned.chart_digest,
        built_as=planned.built_as,
        headline=planned.headline,
        readiness=planned.readiness,
        going_back=planned.going_back,
    )
    _keep(planned)
    if config.environment(planned.target).gate_kind == "pull-request":
        # The gate is a GitHub review of the pull request the write opens (flows/pull_request.py), on this page.
        return Decision(False, "", via="pull-request", review_page=request.description())
    decision = wait_for_approval(request, config.gate)
    wait_for_window(config, planned, decision)
    refuse_if_frozen(config, planned, decision)
    refuse_if_moved(config, planned, decision)
    return decision


def with_freeze(config: PromoConfig, target: str, ready: Readiness) -> Readiness:
    """What the gate into ``target`` shows as keeping the version back: a freeze of ``target`` first, so approving
    then needs an override reason, as for a version that is not ready (recorded as the commit's Override-Reason)."""
    freeze = read_freeze(config, target)
    if freeze is None:
        return ready
    return Readiness((_shown(freeze), *ready.missing), ready.failed)


def refuse_if_frozen(config: PromoConfig, planned: GatePlan, decision: Decision) -> None:
    """The target's freeze, read again after the decision, holds the approval back unless the gate showed that very
    freeze and the approver gave an override reason for it: a freeze set (or set again) while the gate waited was
    not what the approver overrode. A rollback passes (the emergency exit)."""
    if planned.going_back:
        return
    freeze = read_freeze(config, planned.target)
    overridden = freeze is not None and _shown(freeze) in planned.readiness.missing and decision.override_reason
    if freeze is not None and not overridden:
        logger = run_logger()
        logger.error("The approval of %s by %s was not applied: %s", planned.title, decision.approver, freeze.line())
        raise freeze.refusal(config.app)


def _shown(freeze: Freeze) -> str:
    return f"{freeze.line()} (`promo unfreeze {freeze.env}` lifts it)"


def wait_for_window(config: PromoConfig, planned: GatePlan, decision: Decision) -> None:
    """An approval given outside the target's change windows writes at the next opening (the run waits, logging
    what for), or at once when the approver gave an override reason; a rollback never waits (``going_back``). The
    target is read again after the wait (``refuse_if_moved``): what the gate showed may have moved meanwhile."""
    wait_for_window_of(config, planned.target, decision.approver, decision.override_reason, planned.going_back)


def wait_for_window_of(
    config: PromoConfig, target: str, approver: str, override_reason: str | None, going_back: bool
) -> None:
    """``wait_for_window`` for any approval: a Prefect gate's, or the review of a pull request about to merge."""
    hours = config.environment(target).windows
    if going_back or not hours:
        return
    logger = run_logger()
    if override_reason and windows.closed_until(hours, windows.utc_now()):
        logger.warning("Outside the change windows of %s, written now: override by %s: %s",
                       target, approver, override_reason)  # fmt: skip
        return
    windows.wait_for_window(
        hours,
        now=lambda: windows.utc_now(),
        announce=lambda opening: logger.info(
            "Approved by %s outside the change windows of %s: waiting for the window opening at %s",
            approver, target, windows.describe_opening(opening),
        ),  # fmt: skip
    )


def refuse_if_moved(config: PromoConfig, planned: GatePlan, decision: Decision) -> None:
    """``test of hello moved from A to B since the gate opened; run promote-test again`` when the target no longer
    runs what the gate showed: the run's log and the gate's artifact say the approval was not applied and why, and
    the run is tagged so the failure message says it too (deployments/notify.py). Nothing has been written."""
    now = plan_environment_version(config, planned.target, planned.version, allow_downgrade=True).current
    moved = moved_since_gate(config.app, planned, now, rerun=flow_run.get_flow_name() or "the promotion")
    if moved is None:
        return
    title = f"{config.app} {planned.title}"
    run_logger().error(
        "The approval of %s by %s was not applied, nothing was written: %s", title, decision.approver, moved
    )
    create_markdown_artifact(
        key=f"gate-{config.app}-{planned.target}",
        markdown=(
            f"**{title}** approved by `{decision.approver}` ({decision.via}): **not applied**, nothing was written."
            f"\n\n{moved}"
        ),
        description=f"Approval not applied: {title}",
    )
    _tag_not_applied()
    raise moved


def _keep(planned: GatePlan) -> None:
    """Store the plan before its gate opens: only a deployment's run suspends and starts again from the top. A run
    whose gate opened already keeps the plan it showed then."""
    run = _deployed_run()
    if run is None or _gate_opened(run, planned.target):
        return
    key = plan_key(planned.target)
    with _prefect_api("store the plan its gate shows"), get_client(sync_client=True) as client:
        try:  # left by an earlier execution that ended before its gate opened
            client.delete_flow_run_input(run.id, key)
        except httpx.HTTPStatusError as error:
            if error.response.status_code != 404:
                raise
        client.create_flow_run_input(run.id, key, planned.to_json())


def _deployed_run() -> FlowRun | None:
    """This flow run as the server has it now, when it runs under a deployment; None otherwise."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None or context.flow_run.deployment_id is None:
        return None
    with _prefect_api("read its own state"), get_client(sync_client=True) as client:
        return client.read_flow_run(context.flow_run.id)


@contextmanager
def _prefect_api(doing: str) -> Iterator[None]:
    """A Prefect API that fails here is one line: the run stopped before any write, and runs again as it was."""
    try:
        yield
    except httpx.HTTPError as error:
        status = error.response.status_code if isinstance(error, httpx.HTTPStatusError) else None
        detail = f"HTTP {status}" if status else type(error).__name__
        raise TransientError(
            f"the Prefect API failed while the run tried to {doing} ({detail}); nothing was written",
            "run it again once the Prefect server answers (PREFECT_API_URL)",
        ) from None


def _gate_opened(run: FlowRun, target: str) -> bool:
    """Whether the gate into ``target`` has opened in this run: the server records every pause key it accepted."""
    return gate_key(target, 1) in (run.empirical_policy.pause_keys or set())


def _tag_not_applied() -> None:
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    with get_client(sync_client=True) as client:
        tags = client.read_flow_run(context.flow_run.id).tags or []
        client.update_flow_run(context.flow_run.id, tags=sorted({*tags, NOT_APPLIED_TAG}))
