"""The flow run's side of a pull-request gate (flows/pull_request.py): its tags, its suspension under a deployment,
the pull request a resumed run suspended on, and noticing that the run was cancelled while its process polls.

Once its pull request is open, every run that writes through one (local or deployed) carries ``promo-pr-gate``,
``app:<app>``, ``env:<env>`` and ``pr:<number>``. `watch-pull-requests` (flows/watch_pull_requests.py) finds runs by
them: it resumes a suspended run whose pull request was decided, and it closes the pull request of a run that ended
without merging it where no process was left to do so (a suspended run cancelled from the UI, a crashed one).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import httpx
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.flow_runs import suspend_flow_run

from promo.flows.gate import ended_in_one_line, ended_on_server, gate_key
from promo.flows.runinfo import run_logger
from promo.forges.github_pulls import GitHubPullRequests, PullRequestState
from promo.release.gates import GATE_KEY_PREFIX
from promo.release.pull_gate import PULL_REQUEST_GATE_TAG

PR_TAG_PREFIX, ENV_TAG_PREFIX = "pr:", "env:"
PULL_REQUEST_SETTLED_TAG = "promo-pr-settled"  # an ended run whose pull request the watcher is done with
# A local run polling its pull request reads its own state on the server at most this often (it reads the pull
# request at every poll, gate.poll_interval_seconds): a cancel from the UI ends it within about this long.
OWN_STATE_EVERY_SECONDS = 1.0


def pull_request_tags(app: str, env: str, number: int) -> list[str]:
    return [PULL_REQUEST_GATE_TAG, f"app:{app}", f"{ENV_TAG_PREFIX}{env}", f"{PR_TAG_PREFIX}{number}"]


def tagged_pull_requests(tags: Iterable[str]) -> list[int]:
    """The pull request numbers a run's tags name (``pr:<number>``), in order."""
    found = [tag.removeprefix(PR_TAG_PREFIX) for tag in tags if tag.startswith(PR_TAG_PREFIX)]
    return sorted(int(number) for number in found if number.isdigit())


def tagged_environments(tags: Iterable[str]) -> list[str]:
    """The environments a run's tags name (``env:<env>``): the one it writes, for a run of promo's."""
    return [tag.removeprefix(ENV_TAG_PREFIX) for tag in tags if tag.startswith(ENV_TAG_PREFIX)]


def tag_waiting(app: str, env: str, pull: PullRequestState) -> None:
    """Tag this run with its pull request, as soon as it is open: whatever ends the run afterwards, the watcher can
    tell which pull request it leaves behind. Outside a flow run (a function called directly) nothing is tagged.

    A run writes one environment, so it waits on one pull request at a time: a run retried after it ended drops the
    tag of the pull request its earlier attempt had (closed as that attempt ended, else reused under the same number)
    and the watcher's mark that it was done with that end."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    with get_client(sync_client=True) as client:
        tags = client.read_flow_run(context.flow_run.id).tags or []  # read: other steps tag the run too
        kept = [tag for tag in tags if not tag.startswith(PR_TAG_PREFIX) and tag != PULL_REQUEST_SETTLED_TAG]
        wanted = sorted({*kept, *pull_request_tags(app, env, pull.number)})
        if wanted != sorted(tags):
            client.update_flow_run(context.flow_run.id, tags=wanted)


def under_deployment() -> bool:
    context = FlowRunContext.get()
    return context is not None and context.flow_run is not None and context.flow_run.deployment_id is not None


def suspend(env: str, pull: PullRequestState, timeout: int) -> None:
    """Suspend the run until `watch-pull-requests` resumes it; it then starts again from the top. Each suspension
    takes the next gate key of ``env``: the server refuses a key it saw, and the first one marks the gate opened, so
    the resumed run reads back the plan its gate showed (flows/gate_plan.py) and the pull request it suspended on
    (``suspended_on``)."""
    context = FlowRunContext.get()
    assert context is not None and context.flow_run is not None
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(context.flow_run.id)
    used = [key for key in run.empirical_policy.pause_keys or () if key.startswith(f"{GATE_KEY_PREFIX}{env}-")]
    run_logger().info("Suspended until pull request #%s is decided (%s): watch-pull-requests resumes it",
                      pull.number, pull.html_url)  # fmt: skip
    suspend_flow_run(timeout=max(timeout, 1), key=gate_key(env, len(used) + 1))


def suspended_on(pulls: GitHubPullRequests, env: str, branch: str) -> PullRequestState | None:
    """The pull request from ``branch`` this run suspended on before this execution: a deployment's run resumed
    after its gate into ``env`` opened (the server keeps a run's pause keys until it ends, so a retry after the run
    ended asks anew). None for a local run, a first execution or a retry."""
    context = FlowRunContext.get()
    if not under_deployment() or context is None or context.flow_run is None:
        return None
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(context.flow_run.id)
    if gate_key(env, 1) not in (run.empirical_policy.pause_keys or set()):
        return None
    for number in tagged_pull_requests(run.tags or []):
        pull = pulls.get(number)
        if pull.head == branch:
            return pull
    return None


class OwnRun:
    """This run as the server has it, read while its process polls a pull request: a run cancelled from the UI or
    the API (or ended by anything else) stops polling and fails in one line, the way a local gate does
    (flows/gate.py), and its pull request is closed by the caller."""

    def __init__(self, title: str) -> None:
        context = FlowRunContext.get()
        self.flow_run_id = context.flow_run.id if context is not None and context.flow_run is not None else None
        self.title = title
        self.next_read = 0.0

    def check(self) -> None:
        """Raise ApprovalRejected (``... was cancelled: <why>``) once the run was ended on the server."""
        if self.flow_run_id is None or time.monotonic() < self.next_read:
            return
        self.next_read = time.monotonic() + OWN_STATE_EVERY_SECONDS
        try:
            ended = ended_on_server(self.flow_run_id)
        except httpx.HTTPError:  # the server away for a moment: the pull request is what the run waits for
            return
        if ended is not None:
            raise ended_in_one_line(ended, f"the pull request gate of {self.title}")
