"""`watch-pull-requests`: resume the suspended runs whose pull request was decided, and close the pull requests of
runs that ended without merging them.

Under a deployment a run waiting for a review of its pull request suspends (flows/pull_request.py): no process waits
with it. This flow, which `promo setup` schedules every minute, asks GitHub about each such run's pull request and
resumes the run once the pull request is approved by an approver, rejected by one (a request for changes), closed or
merged. The resumed run starts again from the top, reads the plan its gate showed (flows/gate_plan.py) and decides
for itself from the pull request: a resume passes nothing, so resuming too often costs a restart, never a write.

A suspended run cancelled from the UI or the API ends on the server alone, and a crashed one never got to its
cleanup: their pull requests would stay open for a reviewer to approve in vain. So the watcher also closes the open
promotion pull request of each run that ended Cancelled, Failed or Crashed (with a comment naming the run and its
state) and deletes its branch, unless a run still going (a re-run of the same promotion) carries the same pull
request. It looks at runs that ended within ``ENDED_WITHIN``, at most ``ENDED_RUNS`` of them, and marks each one it
is done with (``PULL_REQUEST_SETTLED_TAG``), so each pull request is read once: closing is idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

from prefect import flow
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterEndTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.responses import SetStateStatus
from prefect.client.schemas.sorting import FlowRunSort

from promo.clients import gitops_pull_requests
from promo.config import PromoConfig
from promo.errors import ApprovalRejected, PromoError
from promo.flows.pull_request_run import PULL_REQUEST_SETTLED_TAG, tagged_environments, tagged_pull_requests
from promo.flows.runinfo import run_logger
from promo.flows.stored_config import run_config
from promo.forges.github_pulls import GitHubPullRequests
from promo.release.pull_gate import PULL_REQUEST_GATE_TAG, branch_version, decide

ENDED_WITHOUT_MERGING = [StateType.CANCELLED, StateType.FAILED, StateType.CRASHED]
FINAL = [StateType.COMPLETED, *ENDED_WITHOUT_MERGING]
ENDED_WITHIN = timedelta(days=7)  # a watcher stopped for longer leaves older ones open: close those by hand
ENDED_RUNS = 200


@dataclass(frozen=True)
class Watched:
    resumed: list[UUID] = field(default_factory=list)  # the suspended runs it resumed
    closed: list[int] = field(default_factory=list)  # the pull requests it closed


@flow(name="watch-pull-requests")
def watch_pull_requests(config_path: str | None = None, app: str | None = None) -> Watched:
    """Resume the suspended runs of the app whose pull request was decided; close the pull requests of its runs that
    ended without merging them."""
    config = run_config(config_path, app)
    return Watched(resume_decided_runs(config), close_abandoned_pull_requests(config))


def resume_decided_runs(config: PromoConfig) -> list[UUID]:
    pulls = gitops_pull_requests(config)
    wanted = FlowRunFilter(
        tags=FlowRunFilterTags(all_=[PULL_REQUEST_GATE_TAG, f"app:{config.app}"]),
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
    )
    resumed = []
    with get_client(sync_client=True) as client:
        for run in client.read_flow_runs(flow_run_filter=wanted):
            numbers, envs = tagged_pull_requests(run.tags), tagged_environments(run.tags)
            if not numbers or not envs or envs[-1] not in config.environment_names:
                continue
            number = numbers[-1]  # a run carries its current pull request alone (pull_request_run.tag_waiting)
            if _decided(pulls, number, config.environment(envs[-1]).approvers):
                answer = client.resume_flow_run(run.id)
                if answer.status != SetStateStatus.ACCEPT:
                    run_logger().warning("Flow run %s was not resumed: %s", run.name, answer.details)
                    continue
                run_logger().info("Resumed flow run %s: pull request #%s was decided", run.name, number)
                resumed.append(run.id)
    return resumed


def _decided(pulls: GitHubPullRequests, number: int, approvers: list[str]) -> bool:
    pull = pulls.get(number)
    if pull.state == "closed":
        return True
    try:
        return decide(pulls.reviews(number), pull.head_sha, approvers, title="", url=pull.html_url) is not None
    except ApprovalRejected:
        return True


def close_abandoned_pull_requests(config: PromoConfig, now: datetime | None = None) -> list[int]:
    """Close the open pull request of each run of the app that ended without merging it, and delete its branch; the
    pull requests it closed. One held by a run still going is left for that run."""
    pulls = gitops_pull_requests(config)
    tagged = FlowRunFilterTags(all_=[PULL_REQUEST_GATE_TAG, f"app:{config.app}"])
    going = FlowRunFilter(tags=tagged, state=FlowRunFilterState(type=FlowRunFilterStateType(not_any_=FINAL)))
    ended = FlowRunFilter(
        tags=tagged,
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=ENDED_WITHOUT_MERGING)),
        end_time=FlowRunFilterEndTime(after_=(now or datetime.now(UTC)) - ENDED_WITHIN),
    )
    closed = []
    with get_client(sync_client=True) as client:
        going_runs = client.read_flow_runs(flow_run_filter=going)
        held = {number for run in going_runs for number in tagged_pull_requests(run.tags)}
        runs = client.read_flow_runs(flow_run_filter=ended, sort=FlowRunSort.END_TIME_DESC, limit=ENDED_RUNS)
        for run in runs:
            if PULL_REQUEST_SETTLED_TAG in run.tags:
                continue
            numbers = tagged_pull_requests(run.tags)
            settled = True
            for number in numbers:
                if number in held:
                    settled = False
                    continue
                try:
                    if _close_left_open(pulls, config, run, number):
                        closed.append(number)
                except PromoError as error:  # GitHub away: the next minute tries again
                    settled = False
                    run_logger().warning("Pull request #%s of flow run %s was left open (%s)", number, run.name, error)
            if settled:
                _settle(client, run)
    return closed


def _close_left_open(pulls: GitHubPullRequests, config: PromoConfig, run: FlowRun, number: int) -> bool:
    """Close pull request ``number`` that ``run`` left open, naming the run and how it ended; False when there was
    nothing to close (merged, closed already) or it is no promotion of this app into the run's environment (the
    tag is only the run's word for it)."""
    pull = pulls.get(number)
    envs = tagged_environments(run.tags)
    ours = pull.base == config.gitops.branch and any(branch_version(pull.head, config.app, env) for env in envs)
    if pull.state != "open" or not ours:
        return False
    how = run.state_name or "unknown"
    if run.state is not None and run.state.message:
        how += f" ({run.state.message})"
    pulls.close(number, f"Closed by promo: flow run {run.name} ({run.id}) ended {how} without merging it; "
                        "nothing was written.")  # fmt: skip
    pulls.delete_branch(pull.head)
    run_logger().info("Closed pull request #%s (%s): flow run %s ended %s without merging it",
                      number, pull.html_url, run.name, how)  # fmt: skip
    return True


def _settle(client: SyncPrefectClient, run: FlowRun) -> None:
    client.update_flow_run(run.id, tags=sorted({*run.tags, PULL_REQUEST_SETTLED_TAG}))
