"""A pull request's flow run, on the GitHub stand-in and a real Prefect server: the run is tagged with its pull request,
a local run cancelled from the UI ends in one line and closes it, `watch-pull-requests` closes the pull request of a
run that ended without merging it, a run resumed because its pull request was closed fails without opening
another, and a stale branch of an earlier attempt is made again. The same under a deployment and a process worker:
tests/integration/test_pull_request_gates.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import pytest
from prefect import flow, tags
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.context import FlowRunContext
from prefect.flow_engine import run_flow
from prefect.states import Cancelled, Completed, State

from promo.config import PromoConfig
from promo.errors import ApprovalRejected
from promo.flows.deploy import deploy
from promo.flows.gate import CANCELLED_BY_HAND
from promo.flows.pull_request_run import PULL_REQUEST_SETTLED_TAG, tag_waiting
from promo.flows.watch_pull_requests import close_abandoned_pull_requests
from promo.gitops.repo import Trailers
from promo.release.approvals import Decision
from promo.release.pull_gate import PULL_REQUEST_GATE_TAG
from promo.tasks.gitops import write_request
from tests.fixtures.github_standin import GitHubWorld, github  # noqa: F401 (the fixture)
from tests.fixtures.gitrepos import application
from tests.fixtures.registry import registry_server  # noqa: F401 (the fixture)
from tests.flows.test_pull_requests import (  # noqa: F401 (config: the fixture)
    BRANCH,
    SHOWN,
    STAGE,
    SUBJECT,
    VERSION,
    Running,
    config,
    pass_check,
    wait_until,
)

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def no_earlier_runs() -> None:
    """Runs of other tests on the session's server carry the same tags (app:hello, pr:1 of their own stand-in): gone,
    they are not taken for this test's, nor closed or held on its behalf."""
    with get_client(sync_client=True) as client:
        for run in client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["app:hello"]))):
            client.delete_flow_run(run.id)


def tags_of(pull: int) -> list[str]:
    return [PULL_REQUEST_GATE_TAG, "app:hello", "env:stage", f"pr:{pull}"]


def runs_tagged(tag: str) -> list[FlowRun]:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])))


def deployed_run(client: SyncPrefectClient, tags: list[str], name: str = "promote-stage") -> FlowRun:
    """A run of a deployment (of a flow that does nothing), as a worker would be handed it."""

    @flow(name=name)
    def nothing() -> None:
        pass

    deployment = client.create_deployment(flow_id=client.create_flow(nothing), name="pull-request-runs")
    return client.create_flow_run_from_deployment(deployment, tags=tags)


def comments(tmp_path: Path, number: int) -> list[str]:
    state = json.loads((tmp_path / "github-state.json").read_text())["gitops"]
    return [comment["body"] for comment in state["comments"] if comment["number"] == number]


def open_promotion(github: GitHubWorld) -> int:
    """The pull request a run of the promotion opened, as the run pushed and opened it."""
    github.push_branch(BRANCH, {STAGE: application("hello", "stage", VERSION)}, SUBJECT)
    return github.as_user("promo").open(BRANCH, "main", title=SUBJECT, body="the gate page").number


def test_a_local_run_cancelled_from_prefect_ends_in_one_line_and_closes_its_pull_request(
    github: GitHubWorld, config: Callable[..., PromoConfig], tmp_path: Path
) -> None:
    running = Running(config())
    pull = running.pull_request(github)
    wait_until(lambda: len(runs_tagged(f"pr:{pull.number}")) == 1)  # tagged as soon as its pull request is open
    run = runs_tagged(f"pr:{pull.number}")[0]
    assert set(tags_of(pull.number)) <= set(run.tags)
    with get_client(sync_client=True) as client:  # what the UI's Cancel and `prefect flow-run cancel` send
        client.set_flow_run_state(run.id, State(type=StateType.CANCELLING))

    line = f"the pull request gate of hello {VERSION} into stage was cancelled: {CANCELLED_BY_HAND}"
    with pytest.raises(ApprovalRejected, match=f"^{line}; nothing was written"):
        running.join(timeout=60)
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run.id).state
    assert (state.type, state.message) == (StateType.CANCELLED, CANCELLED_BY_HAND)
    closed = github.as_user("promo").get(pull.number)
    assert (closed.state, closed.merged) == ("closed", False)
    assert any(f"the run ended without merging it ({line}" in body for body in comments(tmp_path, pull.number))
    assert github.remote.read(STAGE) == application("hello", "stage", SHOWN)


def test_the_watcher_closes_the_pull_request_of_a_run_that_ended_without_merging_it_once(
    github: GitHubWorld, config: Callable[..., PromoConfig], tmp_path: Path
) -> None:
    settings = config()
    number = open_promotion(github)
    with get_client(sync_client=True) as client:
        run = deployed_run(client, tags_of(number))
        client.set_flow_run_state(run.id, State(type=StateType.CANCELLING))  # suspended: Cancelled at once
        client.set_flow_run_state(run.id, Cancelled(message="not this week"), force=True)

        assert close_abandoned_pull_requests(settings) == [number]
        closed = github.as_user("promo").get(number)
        assert (closed.state, closed.merged) == ("closed", False)
        said = [body for body in comments(tmp_path, number) if body.startswith("Closed by promo: flow run")]
        assert said == [f"Closed by promo: flow run {run.name} ({run.id}) ended Cancelled (not this week) without "
                        "merging it; nothing was written."]  # fmt: skip
        assert github.as_user("promo").branch_sha(BRANCH) is None
        assert PULL_REQUEST_SETTLED_TAG in client.read_flow_run(run.id).tags

        assert close_abandoned_pull_requests(settings) == []  # done once: no second comment
        assert len([body for body in comments(tmp_path, number) if body.startswith("Closed by promo")]) == 1


def test_the_watcher_leaves_a_pull_request_a_run_still_holds_and_one_that_is_no_promotion(
    github: GitHubWorld, config: Callable[..., PromoConfig]
) -> None:
    settings = config()
    number = open_promotion(github)
    github.push_branch("someone/else", {"README.md": "hello\n"}, "not a promotion")
    other = github.as_user("alice").open("someone/else", "main", title="docs", body="").number
    with get_client(sync_client=True) as client:
        cancelled = deployed_run(client, [*tags_of(number), "pr:" + str(other)])
        client.set_flow_run_state(cancelled.id, Cancelled(), force=True)
        again = deployed_run(client, tags_of(number))  # a re-run of the promotion, reusing the pull request
        client.set_flow_run_state(again.id, State(type=StateType.RUNNING), force=True)

        assert close_abandoned_pull_requests(settings) == []
        assert github.as_user("promo").get(number).state == "open"  # the re-run waits on it
        assert github.as_user("promo").get(other).state == "open"  # the tag is only the run's word for it
        assert PULL_REQUEST_SETTLED_TAG not in client.read_flow_run(cancelled.id).tags  # looked at again later

        client.set_flow_run_state(again.id, Completed(), force=True)
        assert close_abandoned_pull_requests(settings) == [number]
        assert github.as_user("promo").get(other).state == "open"


def test_a_run_resumed_because_its_pull_request_was_closed_fails_without_opening_another(
    github: GitHubWorld, config: Callable[..., PromoConfig]
) -> None:
    settings = config()
    number = open_promotion(github)
    github.as_user("alice").close(number, "not this one")  # what the watcher resumes the suspended run for

    @flow(name="promote-stage")
    def step() -> None:
        page = Decision(False, "", via="pull-request", review_page="**hello 0.2.0** test -> stage")
        request = write_request(settings, "stage", VERSION, expected={"preprod": SHOWN}, subject=SUBJECT,
                                trailers=Trailers(promoted_from="test"))  # fmt: skip
        deploy(settings, request, on_failure=None, gate=page)

    with get_client(sync_client=True) as client:
        resumed = resumed_run(client, step, tags_of(number))
    with pytest.raises(ApprovalRejected, match=f"pull request #{number} .* was closed without merging"):
        run_flow(step, flow_run=resumed)
    assert len(github.api("promo", "GET", "/pulls?state=all").json()) == 1
    assert github.remote.read(STAGE) == application("hello", "stage", SHOWN)


def resumed_run(client: SyncPrefectClient, step: object, tags: list[str]) -> FlowRun:
    """A deployment's run as a worker starts it again after its pull request gate into stage suspended it: the
    server kept its first gate key, its tags name the pull request."""
    deployment = client.create_deployment(flow_id=client.create_flow(step), name="resumed")  # type: ignore[arg-type]
    run = client.create_flow_run_from_deployment(deployment, tags=tags)
    policy = run.empirical_policy.model_copy(update={"pause_keys": {"approve-stage-1"}})
    client.update_flow_run(run.id, empirical_policy=policy)
    return client.read_flow_run(run.id)


def test_a_stale_branch_of_an_earlier_attempt_is_closed_and_made_again(
    github: GitHubWorld, config: Callable[..., PromoConfig]
) -> None:
    """The branch holds another change (made on a target that moved since): its pull request is closed, the branch
    deleted on GitHub, and the run's own mirror, which fetched it, makes it again instead of finding the old one."""
    github.push_branch(BRANCH, {STAGE: application("hello", "stage", "0.1.9")}, "an earlier attempt")
    stale = github.as_user("promo").open(BRANCH, "main", title=SUBJECT, body="the gate page").number
    running = Running(config())
    wait_until(lambda: github.as_user("promo").get(stale).state == "closed")
    pull = running.pull_request(github)
    assert pull.number != stale
    assert github.remote.read(STAGE, pull.head_sha) == application("hello", "stage", VERSION)
    pass_check(github, pull.head_sha)
    github.as_user("alice").review(pull.number, "APPROVE")
    assert running.join().commit == github.remote.head()


def test_a_retried_run_is_tagged_with_its_new_pull_request_only(github: GitHubWorld) -> None:
    """Retried after it ended (its pull request closed then, the watcher done with it), a run that opens another
    pull request carries that one alone: the watcher and a resume read the run's pull request from its tags."""
    number = open_promotion(github)
    pull = github.as_user("promo").get(number)

    @flow(name="promote-stage")
    def retried() -> UUID:
        tag_waiting("hello", "stage", pull)
        return FlowRunContext.get().flow_run.id

    with tags("pr:999", PULL_REQUEST_SETTLED_TAG, "version:kept"):
        run_id = retried()
    with get_client(sync_client=True) as client:
        assert sorted(client.read_flow_run(run_id).tags) == sorted([*tags_of(number), "version:kept"])
