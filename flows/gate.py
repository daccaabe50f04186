"""The approval gate: the flow run itself waits, in Prefect, for a typed decision.

Locally the run pauses (its process polls); under a deployment it suspends, so no process or pod is held
for the days a gate may wait, and the run starts again from the top when resumed. Work before the gate
is read-only, so repeating it on resume is safe; what the gate showed is kept with the run when it opens
(flows/gate_plan.py), so the resumed run carries out that plan, not what the world holds by then.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Literal
from uuid import UUID

import anyio
import httpx
import pydantic
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout
from prefect.client.schemas.objects import State
from prefect.flow_runs import apause_flow_run, suspend_flow_run
from prefect.input import RunInput
from prefect.states import Cancelled
from prefect.settings import PREFECT_API_URL
from prefect.utilities.asyncutils import run_coro_as_sync

from promo.release.approvals import ApprovalRequest, Decision, check_approver, check_override, enforce
from promo.config import GateSettings, PromoConfig
from promo.errors import ApprovalRejected, InputError
from promo.gitops.repo import Plan
from promo import windows
from promo.release.gates import GATE_KEY_PREFIX, GATE_TAG, PrefectApi
from promo.release.readiness import Readiness
from promo.tasks.describe import describe_change
from promo.flows.runinfo import run_logger

# Who pre-approved the gates of flows run in this process, and why a version that is not ready may move anyway: the
# CLI's --yes (and --override-reason), where the person running the command is the approver. Deliberately not a flow
# parameter: starting a deployment and deciding at its gate are different permissions, and a worker process never
# has this set.
_pre_approval: ContextVar[Decision | None] = ContextVar("promo_pre_approval", default=None)
# Why a run was cancelled, when the cancel gave no reason (the UI's and `prefect flow-run cancel` give none).
CANCELLED_BY_HAND = "a cancel from the Prefect UI or API"


@contextmanager
def approving_as(approver: str, override_reason: str | None = None) -> Iterator[None]:
    """``with approving_as(name): promote_test()``: gates opened in this process are approved as ``name``; a version
    that is not verified or soaked in its source is refused unless ``override_reason`` says why it moves anyway."""
    comment = "approved at start (--yes)"
    decision = Decision(True, approver, comment, via="cli", override_reason=override_reason or "")
    token = _pre_approval.set(decision)
    try:
        yield
    finally:
        _pre_approval.reset(token)


class Approval(RunInput):
    """The form an approver fills in. Nothing on it decides by default: the server refuses a resume whose
    ``decision`` was not chosen or whose ``approver`` holds no name (the JSON schema carries both rules), so the
    UI shows the error instead of resuming the run, and an untouched form never reads as a rejection."""

    decision: Literal["approve", "reject"] = pydantic.Field(description="Approve or reject this promotion")
    approver: str = pydantic.Field(pattern=r"\S", description="Your name")
    comment: str = pydantic.Field(default="", description="Why; recorded in the GitOps commit")
    override_reason: str = pydantic.Field(
        default="",
        description="Only for a version that is not ready, replaces a newer build, or may not wait for its change "
        "window: why it moves",
    )


def approval_form(request: ApprovalRequest) -> type[Approval]:
    """The form for one gate; with an allow-list the approver field is a choice the server itself validates, and
    for a version that is not ready in its source or replaces a newer build the override reason is required and
    must hold text."""
    fields: dict = {}
    if request.approvers:
        choices = Literal[request.approvers]  # type: ignore[valid-type]
        fields["approver"] = (choices, pydantic.Field(description="Who approves (one of the environment's approvers)"))
    if request.needs_override:
        why = "Not ready" if request.not_ready else "Replaces a newer build"
        fields["override_reason"] = (
            str,
            pydantic.Field(pattern=r"\S", description=f"{why} (see above): why it moves anyway; recorded"),
        )
    form = pydantic.create_model("Approval", __base__=Approval, **fields)
    form._description = request.description()
    return form


def gate_tags(request: ApprovalRequest) -> list[str]:
    """Tags let `promo pending` and `promo approve --env` find a waiting gate without reading its form."""
    return [GATE_TAG, f"app:{request.app}", f"env:{request.target}", f"version:{request.version}"]


def approval_request(
    config: PromoConfig,
    plan: Plan,
    *,
    source: str,
    target: str,
    version: str,
    chart_digest: str,
    built_as: str | None = None,
    headline: str | None = None,
    readiness: Readiness | None = None,
    going_back: bool = False,
) -> ApprovalRequest:
    """What a gate shows the approver: what moves (image, commits, manifest diff), as the Prefect form's page or a
    pull request's body (``wait_for_approval`` asks on the form).

    ``built_as`` is the chart version the commits are counted from when it differs from ``version`` (a release
    is shown with the commits of its RC); ``headline`` heads the page when this is no plain promotion (a rollback).
    ``readiness`` is what the version still lacks in ``source``: shown first, and approving then needs an override
    reason. So does a version that replaces a newer build in ``target`` (said in the page's first line), unless
    ``going_back``: a rollback, which goes back on purpose and says so in its headline."""
    readiness = readiness or Readiness()
    replaces = () if going_back else tuple(plan.current.values())
    change = describe_change(config, target, version, chart_digest, built_as=built_as, replaces=replaces)
    request = ApprovalRequest(
        app=config.app,
        version=version,
        source=source,
        target=target,
        diff=plan.diff,
        approvers=tuple(config.environment(target).approvers),
        chart_digest=chart_digest,
        image=change.image,
        commits=tuple(change.commit_lines()),
        running=change.since,
        current=plan.current,
        headline=headline,
        not_ready=readiness.missing,
        failed_verification=readiness.failed,
        moves_back=change.moves_back,
        windows=() if going_back else tuple(config.environment(target).windows),  # a rollback never waits for one
    )
    return request


def wait_for_approval(request: ApprovalRequest, settings: GateSettings) -> Decision:
    logger = run_logger()
    pre_approval = _pre_approval.get()
    if pre_approval is not None:
        check_approver(request, pre_approval.approver)
        check_override(request, pre_approval)
        decision = _with_override_only_if_needed(request, pre_approval)
        _record(request, decision)
        return decision

    run = FlowRunContext.get().flow_run
    _tag_run(run.id, [tag for tag in run.tags or [] if not tag.startswith("version:")] + gate_tags(request))
    form = approval_form(request)
    _show_on_run_page(request)
    deadline = time.monotonic() + settings.timeout_seconds
    attempt = 0
    while True:
        attempt += 1
        remaining = int(deadline - time.monotonic())
        if remaining <= 0:
            raise _timed_out(request, settings)
        # Prefect's pause and suspend take no state message: this line is what the run's logs say it waits for.
        logger.info("Waiting for approval: %s", request.summary)
        try:
            key = gate_key(request.target, attempt)
            answer = _wait(form, run.deployment_id is not None, remaining, settings, key=key)
        except FlowPauseTimeout:
            raise _timed_out(request, settings) from None
        except _GateEnded as ended:
            raise ended_in_one_line(ended.state, f"the gate of {request.title}") from None
        decision = Decision(
            approved=answer.decision == "approve",
            approver=answer.approver,
            comment=answer.comment,
            override_reason=answer.override_reason,
        )
        try:
            check_approver(request, answer.approver)
            check_override(request, decision)
        except InputError as refusal:
            logger.warning("Approval refused, still waiting: %s", refusal)
            continue
        decision = _with_override_only_if_needed(request, decision)
        _record(request, decision)
        return enforce(request, decision)


def _with_override_only_if_needed(request: ApprovalRequest, decision: Decision) -> Decision:
    """An override reason is recorded only when something was overridden: what the version lacks, or a change window
    closed at the time of the decision (flows/gate_plan.py then writes at once instead of waiting for it)."""
    closed = windows.closed_until(request.windows, windows.utc_now()) is not None
    return decision if request.needs_override or closed else dataclasses.replace(decision, override_reason="")


def gate_key(target: str, attempt: int) -> str:
    """The pause key of a gate into ``target``, the same in every execution of the run: a suspended run starts
    again from the top when resumed, and the server then refuses this key as fired and hands back the answer given
    to it. It depends on nothing re-read from the world, so a resumed run always finds its answer; what that answer
    covers is the plan kept when the gate opened (flows/gate_plan.py). ``attempt`` counts answers refused by the
    run's own checks: each refused answer's key stays behind it, and the next answer is asked under a new one."""
    return f"{GATE_KEY_PREFIX}{target}-{attempt}"


def _wait(form: type[Approval], under_deployment: bool, timeout: int, settings: GateSettings, key: str) -> Approval:
    if under_deployment:
        return suspend_flow_run(wait_for_input=form, timeout=timeout, key=key)
    return run_coro_as_sync(_pause(form, timeout, settings.poll_interval_seconds, key))


async def _pause(form: type[Approval], timeout: int, poll_interval: float, key: str) -> Approval:
    """Prefect's local pause, which polls only for a resume, watched for the run's end: a gate superseded by a newer
    version (flows/supersede.py) is cancelled on the server, and this process then ends in one line, not days later.
    What the pause raises is raised as it is (a task group would wrap it in an exception group)."""
    run_id = FlowRunContext.get().flow_run.id
    outcome: list[Approval | Exception] = []
    async with anyio.create_task_group() as waiting:

        async def answer() -> None:
            try:
                outcome.append(
                    await apause_flow_run(
                        wait_for_input=form, timeout=timeout, poll_interval=poll_interval, key=key  # type: ignore[arg-type]
                    )
                )
            except Exception as error:  # noqa: BLE001 (raised below, outside the task group)
                outcome.append(error)
            waiting.cancel_scope.cancel()

        async def watch() -> None:
            while True:
                await anyio.sleep(poll_interval)
                try:
                    state = await anyio.to_thread.run_sync(ended_on_server, run_id)
                except httpx.HTTPError:  # the pause polls the same server and says so if it stays away
                    continue
                if state is not None:
                    outcome.append(_GateEnded(state))
                    waiting.cancel_scope.cancel()
                    return

        waiting.start_soon(answer)
        waiting.start_soon(watch)
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    return outcome[0]


def ended_on_server(flow_run_id: UUID) -> State | None:
    """The run's final state when it was ended on the server while its own process waits (a local gate, a pull
    request polled), else None. A cancel from the UI or the API asks for Cancelling, which a worker carries out by
    ending the run's process; no worker holds a local run, so the run moves itself on to Cancelled, with the reason."""
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run_id).state
        if state is not None and state.is_cancelling():
            cancelled = Cancelled(message=state.message or CANCELLED_BY_HAND)
            state = client.set_flow_run_state(flow_run_id, cancelled).state
    return state if state is not None and state.is_final() else None


def ended_in_one_line(state: State, what: str) -> ApprovalRejected:
    """The error a run ended on the server (``ended_on_server``) raises: ``<what> was cancelled: <why>``. Told the
    final state first, Prefect's engine raises it without proposing Failed over it, and the run stays Cancelled."""
    FlowRunContext.get().flow_run.state = state
    return ApprovalRejected(
        f"{what} was {state.name.lower()}: {state.message or 'no reason given'}",
        "nothing was written; start the promotion again if it should still move",
    )


class _GateEnded(Exception):
    """The run ended on the server while its gate waited (it was cancelled): ``wait_for_approval`` says so."""

    def __init__(self, state: State) -> None:
        super().__init__(state.message)
        self.state = state


def _tag_run(flow_run_id, tags: list[str]) -> None:
    with get_client(sync_client=True) as client:
        client.update_flow_run(flow_run_id, tags=sorted(set(tags)))


def _timed_out(request: ApprovalRequest, settings: GateSettings) -> ApprovalRejected:
    return ApprovalRejected(
        f"no decision on {request.title} within {settings.timeout_seconds} s",
        "start the promotion again, or raise gate.timeout_seconds in promo.yaml",
    )


def _show_on_run_page(request: ApprovalRequest) -> None:
    """The form's page, as an artifact of the run, so the change is read on the run's page before anyone presses
    Resume. Its own key: ``gate-<app>-<env>`` holds only decisions (a suspended run passes here again on resume)."""
    create_markdown_artifact(
        key=f"gate-{request.app}-{request.target}-change",
        markdown=request.description(),
        description=f"Waiting for approval: {request.title}",
    )


def _record(request: ApprovalRequest, decision: Decision) -> None:
    verdict = "approved" if decision.approved else "rejected"
    create_markdown_artifact(
        key=f"gate-{request.app}-{request.target}",
        markdown=(
            f"**{request.title}** {verdict} by `{decision.approver}` ({decision.via})"
            + (f"\n\n> {decision.comment}" if decision.comment else "")
            + (f"\n\n**Override:** {decision.override_reason}" if decision.override_reason else "")
        ),
        description=f"Approval decision for {request.title}",
    )


def prefect_api() -> PrefectApi:
    """The API this process's Prefect client talks to, for flows that find and answer gates themselves (the demo,
    runs in a thread): Prefect's temporary API too, when no server is named (it has no PREFECT_API_URL to read)."""
    if PREFECT_API_URL.value():
        return PrefectApi.from_environment()
    with get_client(sync_client=True) as client:  # starts the temporary API, if this process has not yet
        url = str(client.api_url).rstrip("/")
    return PrefectApi(url=url, ui_url=url.removesuffix("/api"), headers={})
