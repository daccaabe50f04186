"""`watch-pull-requests`: resume the suspended runs whose pull request was decided.

Under a deployment a run waiting for a review of its pull request suspends (flows/pull_request.py): no process waits
with it. This flow, which `promo setup` schedules every minute, asks GitHub about each such run's pull request and
resumes the run once the pull request is approved by an approver, rejected by one (a request for changes), closed or
merged. The resumed run starts again from the top, reads the plan its gate showed (flows/gate_plan.py) and decides
for itself from the pull request: a resume passes nothing, so resuming too often costs a restart, never a write.
"""

from __future__ import annotations

from uuid import UUID

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.responses import SetStateStatus

from promo.clients import gitops_pull_requests
from promo.config import PromoConfig
from promo.errors import ApprovalRejected
from promo.flows.runinfo import run_logger
from promo.flows.stored_config import run_config
from promo.forges.github_pulls import GitHubPullRequests
from promo.release.pull_gate import PULL_REQUEST_GATE_TAG, decide


@flow(name="watch-pull-requests")
def watch_pull_requests(config_path: str | None = None, app: str | None = None) -> list[UUID]:
    """Resume the suspended runs of the app whose pull request was decided; the runs it resumed."""
    return resume_decided_runs(run_config(config_path, app))


def resume_decided_runs(config: PromoConfig) -> list[UUID]:
    pulls = gitops_pull_requests(config)
    wanted = FlowRunFilter(
        tags=FlowRunFilterTags(all_=[PULL_REQUEST_GATE_TAG, f"app:{config.app}"]),
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
    )
    resumed = []
    with get_client(sync_client=True) as client:
        for run in client.read_flow_runs(flow_run_filter=wanted):
            tags = dict(tag.split(":", 1) for tag in run.tags if ":" in tag)
            if "pr" not in tags or tags.get("env") not in config.environment_names:
                continue
            if _decided(pulls, int(tags["pr"]), config.environment(tags["env"]).approvers):
                answer = client.resume_flow_run(run.id)
                if answer.status != SetStateStatus.ACCEPT:
                    run_logger().warning("Flow run %s was not resumed: %s", run.name, answer.details)
                    continue
                run_logger().info("Resumed flow run %s: pull request #%s was decided", run.name, tags["pr"])
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
