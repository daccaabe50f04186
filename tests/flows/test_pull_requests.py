"""Writing through a pull request, on real parts: the GitHub stand-in process over a real bare GitOps repository
(branch protection on stage and prod, required check ``lint``), a real Prefect server, and the deploy step as every
flow runs it. The run waits by polling the pull request every 10 ms here."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.states import Suspended

from promo.clients import gitops_repo
from promo.config import PromoConfig, config_document, validate_config
from promo.errors import ApprovalRejected, ConflictError
from promo.flows.deploy import Deployed, deploy
from promo.flows.watch_pull_requests import resume_decided_runs
from promo import windows
from promo.forges.github_pulls import GitHubPullRequests, PullRequestState, RequiredChecks
from promo.gitops.history import read_history
from promo.gitops.repo import Trailers
from promo.release.pull_gate import PULL_REQUEST_GATE_TAG
from promo.local.registry import RegistryServer
from promo.release.approvals import Decision
from promo.tasks.gitops import write_request
from tests.fixtures.github_standin import REQUIRED_CHECK, TOKENS, GitHubWorld, github  # noqa: F401 (the fixture)
from tests.fixtures.gitrepos import INITIAL_VERSIONS, ROOT, application
from tests.fixtures.registry import registry_server  # noqa: F401 (the fixture)
from tests.flows.test_cli import run_promo

pytestmark = pytest.mark.integration

VERSION = "0.2.0-rc.abc1234"
SHOWN = INITIAL_VERSIONS[("stage", "preprod")]
STAGE = f"{ROOT}/stage/preprod/hello.yaml"
BRANCH = f"promo/hello/stage/{VERSION}"
SUBJECT = f"promote(hello): test -> stage {VERSION}"


@pytest.fixture
def config(
    github: GitHubWorld, registry_server: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., PromoConfig]:
    return lambda **stage: make_config(github, registry_server, tmp_path, monkeypatch, **stage)


def make_config(
    github: GitHubWorld, registry: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **stage: object
) -> PromoConfig:
    monkeypatch.setenv("PROMO_TEST_GITHUB_TOKEN", TOKENS["promo"])
    environments = [
        {"name": "dev", "clusters": ["preprod"]},
        {"name": "test", "clusters": ["preprod"]},
        {"name": "stage", "clusters": ["preprod"], "write": "pull-request", "approvers": ["alice", "bob"], **stage},
        {"name": "prod", "clusters": ["prod"]},
    ]
    return validate_config(
        {
            "app": "hello",
            "app_repo": {"url": (tmp_path / "app.git").as_uri()},
            "gitops": {"url": github.remote.path.as_uri(), "root": ROOT, "repository": "sandbox/gitops"},
            "chart": {"path": "charts/hello", "repository": f"{registry.host}/pr-charts"},
            "image": {"repository": f"{registry.host}/pr-hello"},
            "environments": environments,
            "forge": {"kind": "github", "api_url": github.server.url, "token_env": "PROMO_TEST_GITHUB_TOKEN"},
            "gate": {"timeout_seconds": 60, "poll_interval_seconds": 0.01},
            "cache_dir": str(tmp_path / "cache"),
        },
        "the test's promo.yaml",
    )


class Running:
    """The deploy step into stage, run in a flow on a thread while the test plays the reviewers."""

    def __init__(
        self, config: PromoConfig, gate: Decision | None = None, version: str = VERSION, approved_by: str | None = None
    ) -> None:
        self.result: Deployed | None = None
        self.error: BaseException | None = None
        page = gate or Decision(False, "", via="pull-request", review_page="**hello 0.2.0** test -> stage")

        @flow(name="promote-stage")
        def step() -> Deployed:
            trailers = Trailers(promoted_from="test", approved_by=approved_by)
            request = write_request(config, "stage", version, expected={"preprod": SHOWN}, subject=SUBJECT,
                                    trailers=trailers)  # fmt: skip
            return deploy(config, request, on_failure=None, gate=page)

        def run() -> None:
            try:
                self.result = step()
            except BaseException as error:  # handed over by join()
                self.error = error

        self.branch = f"promo/hello/stage/{version}"
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def pull_request(self, github: GitHubWorld, timeout: float = 120) -> PullRequestState:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = github.as_user("promo").find_open(self.branch, "main")
            if found is not None:
                return found
            assert self.thread.is_alive(), f"the run ended before it opened its pull request: {self.error!r}"
            time.sleep(0.05)
        raise AssertionError("no pull request opened")

    def join(self, timeout: float = 120) -> Deployed:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the run did not end"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class _Said(logging.Handler):
    """The lines the runs log, as they log them."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def pass_check(github: GitHubWorld, sha: str, state: str = "success") -> None:
    answer = github.api("promo", "POST", f"/statuses/{sha}", {"state": state, "context": REQUIRED_CHECK})
    assert answer.status_code == 201, answer.text


def wait_until(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_an_approvers_review_merges_the_exact_commit_with_promos_subject_and_trailers(
    github: GitHubWorld, config: Callable[..., PromoConfig]
) -> None:
    settings = config(merge_method="squash")
    running = Running(settings)
    pull = running.pull_request(github)
    assert (pull.title, pull.labels) == (SUBJECT, ("app:hello", "env:stage"))
    assert "**hello 0.2.0** test -> stage" in github.api("promo", "GET", f"/pulls/{pull.number}").json()["body"]
    pass_check(github, pull.head_sha)
    review = github.as_user("alice").review(pull.number, "APPROVE", body="looks right", commit=pull.head_sha)

    deployed = running.join()
    assert deployed.approved_by == f"alice (GitHub review {review.id})"
    assert deployed.commit == github.remote.head()
    assert github.remote.read(STAGE) == application("hello", "stage", VERSION)
    message = github.remote.git("log", "-1", "--format=%B", "main")
    assert message.startswith(f"{SUBJECT}\n\nSet the chart version of hello in stage to {VERSION}:")
    approved = f"Approved-By: alice (GitHub review {review.id})"
    for trailer in ("Promoted-From: test", f"Chart-Version: {VERSION}", approved, "Approval-Comment: looks right"):
        assert trailer in message
    assert github.as_user("promo").branch_sha(BRANCH) is None  # the branch is deleted after the merge
    assert_history_reads_it_as_promos(settings, deployed)


def test_a_non_approvers_review_leaves_it_waiting_and_a_request_for_changes_fails_the_run(
    github: GitHubWorld, config: Callable[..., PromoConfig]
) -> None:
    running = Running(config())
    pull = running.pull_request(github)
    pass_check(github, pull.head_sha)
    github.as_user("carol").review(pull.number, "APPROVE")  # a writer, but not one of stage's approvers
    time.sleep(0.3)  # many polls: it must still wait
    assert running.thread.is_alive()
    github.as_user("bob").review(pull.number, "REQUEST_CHANGES", body="not during the freeze")
    with pytest.raises(ApprovalRejected, match="rejected by bob in a review of .*: not during the freeze"):
        running.join()
    assert github.remote.read(STAGE) == application("hello", "stage", SHOWN)  # nothing on the branch
    assert github.as_user("promo").get(pull.number).state == "closed"


def test_a_closed_pull_request_fails_the_run_with_nothing_written(
    github: GitHubWorld, config: Callable[..., PromoConfig]
) -> None:
    running = Running(config())
    pull = running.pull_request(github)
    github.as_user("alice").close(pull.number, "not this one")
    with pytest.raises(ApprovalRejected, match=f"pull request #{pull.number} .* was closed without merging"):
        running.join()
    assert github.remote.read(STAGE) == application("hello", "stage", SHOWN)


def test_a_base_moved_in_another_environments_files_is_updated_and_merged(
    github: GitHubWorld, config: Callable[..., PromoConfig]
) -> None:
    settings = config()
    running = Running(settings)
    pull = running.pull_request(github)
    dev = f"{ROOT}/dev/preprod/hello.yaml"
    github.remote.commit({dev: application("hello", "dev", "0.3.0-rc.1234567")}, "dev moved on")
    pass_check(github, pull.head_sha)
    github.as_user("alice").review(pull.number, "APPROVE")
    wait_until(lambda: github.as_user("promo").get(pull.number).head_sha != pull.head_sha)  # updated by the run
    updated = github.as_user("promo").get(pull.number)
    pass_check(github, updated.head_sha)
    github.as_user("bob").review(pull.number, "APPROVE", commit=updated.head_sha)  # the stand-in dismissed alice's
    deployed = running.join()
    assert deployed.approved_by and deployed.approved_by.startswith("bob (GitHub review ")
    assert "0.3.0-rc.1234567" in github.remote.read(dev)
    assert github.remote.read(STAGE) == application("hello", "stage", VERSION)
    # merged as a merge commit: history reads it through its first parent, as promo's own write
    parents = github.remote.git("rev-list", "--parents", "-1", "main").split()[1:]
    assert len(parents) == 2
    assert f"Approved-By: {deployed.approved_by}" in github.remote.git("log", "-1", "--format=%B", "main")
    assert_history_reads_it_as_promos(settings, deployed)


def assert_history_reads_it_as_promos(settings: PromoConfig, deployed: Deployed) -> None:
    repo = gitops_repo(settings)
    repo.snapshot()  # fetched
    clusters = {env.name: env.clusters for env in settings.environments}
    newest = read_history(repo.mirror, "main", "hello", clusters, root=ROOT, env="stage")[0]
    assert (newest.commit, newest.kind, newest.manual_reason) == (deployed.commit, "promote", None)
    assert (newest.approver, newest.promoted_from) == (deployed.approved_by, "test")
    assert [(move.before, move.after) for move in newest.moves] == [(SHOWN, VERSION)]


def test_the_target_moved_closes_the_pull_request_as_stale_and_fails(
    github: GitHubWorld, config: Callable[..., PromoConfig], tmp_path: Path
) -> None:
    running = Running(config())
    pull = running.pull_request(github)
    other = github.push_branch("by-hand", {STAGE: application("hello", "stage", "0.1.5")}, "stage by hand")
    github.remote.git("update-ref", "refs/heads/main", other)  # an admin's push past the protection
    github.as_user("alice").review(pull.number, "APPROVE")
    with pytest.raises(ConflictError, match=f"stage of hello moved from {SHOWN} to 0.1.5"):
        running.join()
    closed = github.as_user("promo").get(pull.number)
    assert (closed.state, closed.merged) == ("closed", False)
    comments = json.loads((tmp_path / "github-state.json").read_text())["gitops"]["comments"]
    assert any(f"Closed as stale: stage of hello moved from {SHOWN} to 0.1.5" in c["body"] for c in comments)
    assert github.remote.read(STAGE) == application("hello", "stage", "0.1.5")


def test_a_failed_required_check_fails_the_run_naming_it(
    github: GitHubWorld, config: Callable[..., PromoConfig]
) -> None:
    running = Running(config())
    pull = running.pull_request(github)
    github.as_user("alice").review(pull.number, "APPROVE")
    pass_check(github, pull.head_sha, "failure")
    with pytest.raises(ConflictError, match=f"the check {REQUIRED_CHECK} .* failed on pull request #{pull.number}"):
        running.join()
    assert github.remote.read(STAGE) == application("hello", "stage", SHOWN)
    assert github.as_user("promo").get(pull.number).state == "closed"


def test_a_re_run_reuses_the_open_pull_request(
    github: GitHubWorld, config: Callable[..., PromoConfig]
) -> None:
    settings = config()
    said = _Said()
    logging.getLogger("prefect.flow_runs").addHandler(said)
    try:
        first = Running(settings)
        pull = first.pull_request(github)
        again = Running(settings)  # a second run of the same promotion while the first waits
        wait_until(lambda: any(line.startswith(f"Reusing pull request #{pull.number} ") for line in said.lines))
    finally:
        logging.getLogger("prefect.flow_runs").removeHandler(said)
    assert len(github.api("promo", "GET", "/pulls?state=all").json()) == 1 and again.thread.is_alive()
    pass_check(github, pull.head_sha)
    github.as_user("alice").review(pull.number, "APPROVE")
    results = []
    for running in (first, again):
        try:
            results.append(running.join().commit)
        except ApprovalRejected as error:  # the loser finds the pull request merged or closed
            results.append(str(error))
    assert github.remote.read(STAGE) == application("hello", "stage", VERSION)
    assert len(github.api("promo", "GET", "/pulls?state=all").json()) == 1


def test_promo_pending_lists_the_pull_request_and_promo_approve_reviews_as_the_tokens_user(
    github: GitHubWorld,
    config: Callable[..., PromoConfig],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = config()
    promo_yaml = tmp_path / "promo.yaml"
    promo_yaml.write_text(yaml.safe_dump(config_document(settings)))
    running = Running(settings)
    pull = running.pull_request(github)
    pass_check(github, pull.head_sha)

    code, out, _ = run_promo(monkeypatch, capsys, "pending", "--json", "--config", str(promo_yaml))
    assert code == 0
    listed = [gate for gate in json.loads(out) if "pull_request" in gate]
    assert listed == [{"app": "hello", "env": "stage", "version": VERSION, "pull_request": {
        "number": pull.number, "url": pull.url, "html_url": pull.html_url}}]  # fmt: skip
    monkeypatch.setenv("PROMO_CONFIG", str(promo_yaml))  # as the README's tour has it: no --config
    code, out, _ = run_promo(monkeypatch, capsys, "pending")
    assert code == 0 and f"hello {VERSION} into stage: waiting for a review of {pull.html_url}" in out

    monkeypatch.setattr("sys.stdin", io.StringIO(TOKENS["alice"] + "\n"))
    args = ("approve", "--env", "stage", "--config", str(promo_yaml), "--github-token", "--comment", "ship it")
    code, out, err = run_promo(monkeypatch, capsys, *args)
    assert code == 0, err
    assert out.startswith(f"approved hello {VERSION} into stage as alice (GitHub review ")
    assert TOKENS["alice"] not in out + err
    deployed = running.join()
    assert deployed.approved_by and deployed.approved_by.startswith("alice (GitHub review ")
    assert "Approval-Comment: ship it" in github.remote.git("log", "-1", "--format=%B", "main")


def test_a_landed_version_closes_the_pull_request_of_an_older_one_and_its_run_ends(
    github: GitHubWorld, config: Callable[..., PromoConfig]
) -> None:
    settings = config()
    older = Running(settings, version="0.1.1-rc.def5678")
    superseded = older.pull_request(github)
    newer = Running(settings)
    pull = newer.pull_request(github)
    pass_check(github, pull.head_sha)
    github.as_user("alice").review(pull.number, "APPROVE")
    newer.join()
    with pytest.raises(ApprovalRejected, match=f"pull request #{superseded.number} .* was closed without merging"):
        older.join()
    assert github.as_user("promo").get(superseded.number).state == "closed"
    assert github.remote.read(STAGE) == application("hello", "stage", VERSION)


def test_with_the_prefect_form_as_the_gate_the_pull_request_only_satisfies_branch_protection(
    github: GitHubWorld, config: Callable[..., PromoConfig]
) -> None:
    settings = config(approval="prefect", approvers=["carol"])
    running = Running(settings, gate=Decision(True, "carol", via="gate"), approved_by="carol")
    pull = running.pull_request(github)
    pass_check(github, pull.head_sha)
    time.sleep(0.3)  # GitHub's protection wants a review: promo waits for it, merging nothing
    assert running.thread.is_alive() and github.remote.read(STAGE) == application("hello", "stage", SHOWN)
    github.as_user("bob").review(pull.number, "APPROVE")  # a writer: what the branch protection asks for
    deployed = running.join()
    assert deployed.approved_by is None  # the gate was the form: its approver is in the trailers already
    message = github.remote.git("log", "-1", "--format=%B", "main")
    assert "Approved-By: carol\n" in message and "GitHub review" not in message


def test_a_pull_request_whose_branch_holds_changes_promo_did_not_make_is_closed_and_nothing_merged(
    github: GitHubWorld, config: Callable[..., PromoConfig]
) -> None:
    settings = config(approval="prefect", approvers=["carol"])
    running = Running(settings, gate=Decision(True, "carol", via="gate"), approved_by="carol")
    pull = running.pull_request(github)
    prod = f"{ROOT}/prod/prod/hello.yaml"
    before = github.remote.read(prod)
    # someone who may push replaces promo's commit with one that also moves prod, under promo's branch name
    sneaked = github.push_branch(running.branch, {STAGE: application("hello", "stage", VERSION),
                                                  prod: application("hello", "prod", "9.9.9")})  # fmt: skip
    pass_check(github, sneaked)
    github.as_user("bob").review(pull.number, "APPROVE", commit=sneaked)  # what the branch protection asks for
    with pytest.raises(ConflictError, match=f"pull request #{pull.number} .* holds changes promo did not make"):
        running.join()
    assert github.remote.read(prod) == before and github.remote.read(STAGE) == application("hello", "stage", SHOWN)
    assert github.as_user("promo").get(pull.number).state == "closed"


def test_the_watcher_resumes_a_suspended_run_once_its_pull_request_is_decided(
    github: GitHubWorld, config: Callable[..., PromoConfig]
) -> None:
    settings = config()
    github.push_branch(BRANCH, {STAGE: application("hello", "stage", VERSION)}, SUBJECT)
    pull = github.as_user("promo").open(BRANCH, "main", title=SUBJECT, body="the gate page")

    @flow(name="promote-stage")
    def suspended() -> None:
        pass

    tags = [PULL_REQUEST_GATE_TAG, "app:hello", "env:stage", f"pr:{pull.number}"]
    with get_client(sync_client=True) as client:
        # Prefect resumes (reschedules) only a deployment's suspended run
        deployment = client.create_deployment(flow_id=client.create_flow(suspended), name="watcher-test")
        run = client.create_flow_run_from_deployment(deployment, tags=tags)
        client.set_flow_run_state(run.id, Suspended(timeout_seconds=600, pause_key="approve-stage-1"), force=True)

        def state() -> str | None:
            current = client.read_flow_run(run.id).state
            return current.name if current else None

        assert resume_decided_runs(settings) == [] and state() == "Suspended"  # no review yet
        github.as_user("carol").review(pull.number, "APPROVE")  # not one of stage's approvers
        assert resume_decided_runs(settings) == [] and state() == "Suspended"
        github.as_user("alice").review(pull.number, "APPROVE")
        assert resume_decided_runs(settings) == [run.id]
        assert state() == "Resuming"


class Said:
    """What the runs log while the ``with`` block lasts."""

    def __enter__(self) -> list[str]:
        self.handler = _Said()
        logging.getLogger("prefect.flow_runs").addHandler(self.handler)
        return self.handler.lines

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("prefect.flow_runs").removeHandler(self.handler)


def post_status(github: GitHubWorld, sha: str, context: str, state: str) -> None:
    answer = github.api("promo", "POST", f"/statuses/{sha}", {"state": state, "context": context})
    assert answer.status_code == 201, answer.text


def assert_promos_message(github: GitHubWorld, approved_by: str) -> None:
    message = github.remote.git("log", "-1", "--format=%B", "main")
    assert message.startswith(f"{SUBJECT}\n\nSet the chart version of hello in stage to {VERSION}:")
    for trailer in ("Promoted-From: test", f"Chart-Version: {VERSION}", f"Approved-By: {approved_by}"):
        assert trailer in message.splitlines()


def test_a_failing_check_github_does_not_require_neither_blocks_nor_fails_the_run(
    github: GitHubWorld, config: Callable[..., PromoConfig]
) -> None:
    with Said() as said:
        running = Running(config())
        pull = running.pull_request(github)
        post_status(github, pull.head_sha, "docs", "failure")  # not one of main's required checks
        pass_check(github, pull.head_sha)
        github.as_user("alice").review(pull.number, "APPROVE")
        deployed = running.join()
    assert github.remote.read(STAGE) == application("hello", "stage", VERSION)
    assert deployed.commit == github.remote.head()
    assert any(line.startswith(f"The check docs failed on pull request #{pull.number}") and "decides nothing" in line
               for line in said)  # fmt: skip


def test_auto_merge_lets_github_merge_the_approved_head_with_promos_subject_and_trailers(
    github: GitHubWorld, config: Callable[..., PromoConfig]
) -> None:
    with Said() as said:
        running = Running(config())
        pull = running.pull_request(github)
        review = github.as_user("alice").review(pull.number, "APPROVE")  # the required check is still pending
        wait_until(lambda: github.as_user("promo").get(pull.number).auto_merge)
        assert any(line.startswith(f"Auto-merge enabled for pull request #{pull.number}") for line in said)
        assert github.remote.read(STAGE) == application("hello", "stage", SHOWN)
        pass_check(github, pull.head_sha)  # GitHub (the stand-in) merges now, and the run finds it merged
        deployed = running.join()
    merged = github.api("promo", "GET", f"/pulls/{pull.number}").json()
    assert merged["merged_by"]["login"] == "promo" and merged["merge_commit_sha"] == deployed.commit
    assert deployed.approved_by == f"alice (GitHub review {review.id})"
    assert_promos_message(github, deployed.approved_by)
    assert github.remote.read(STAGE) == application("hello", "stage", VERSION)


def test_a_pull_request_github_could_merge_already_is_merged_at_once_instead_of_by_auto_merge(
    github: GitHubWorld, config: Callable[..., PromoConfig]
) -> None:
    with Said() as said:
        running = Running(config())
        pull = running.pull_request(github)
        pass_check(github, pull.head_sha)
        review = github.as_user("alice").review(pull.number, "APPROVE")  # clean: GitHub refuses auto-merge
        deployed = running.join()
    assert any("GitHub had nothing left to wait for" in line for line in said)
    assert not any(line.startswith("Auto-merge enabled") for line in said)
    assert deployed.approved_by == f"alice (GitHub review {review.id})"
    assert_promos_message(github, deployed.approved_by)


def test_without_auto_merge_in_the_repository_promo_waits_for_the_checks_and_merges(
    github: GitHubWorld, config: Callable[..., PromoConfig]
) -> None:
    assert github.api("carol", "PATCH", "", {"allow_auto_merge": False}).status_code == 200
    with Said() as said:
        running = Running(config())
        pull = running.pull_request(github)
        github.as_user("alice").review(pull.number, "APPROVE")
        wait_until(lambda: any(line.startswith("Waiting for the checks of pull request") for line in said))
        pass_check(github, pull.head_sha)
        deployed = running.join()
    assert not any("auto-merge" in line.lower() for line in said)
    assert deployed.commit == github.remote.head()
    assert_promos_message(github, str(deployed.approved_by))


def test_checks_whose_requirement_cannot_be_read_all_count(
    github: GitHubWorld, config: Callable[..., PromoConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = "reading the protection of main failed: GitHub answered 403: Resource not accessible by integration"
    monkeypatch.setattr(GitHubPullRequests, "required_checks", lambda self, branch: RequiredChecks(None, refused))
    with Said() as said:
        running = Running(config())
        pull = running.pull_request(github)
        pass_check(github, pull.head_sha)
        post_status(github, pull.head_sha, "docs", "failure")
        github.as_user("alice").review(pull.number, "APPROVE")
        with pytest.raises(ConflictError, match=f"the check docs .* failed on pull request #{pull.number}"):
            running.join()
    assert [line for line in said if line.startswith("Which checks main requires is not readable")] == [
        f"Which checks main requires is not readable ({refused}): every check of the pull request counts"
    ]
    assert github.as_user("promo").get(pull.number).state == "closed"
    assert github.remote.read(STAGE) == application("hello", "stage", SHOWN)


def test_a_review_outside_the_change_windows_merges_once_the_window_opens(
    github: GitHubWorld, config: Callable[..., PromoConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    opening = datetime(2026, 12, 12, 9, 0, tzinfo=UTC)
    started = time.monotonic()
    at = opening - timedelta(seconds=3)
    monkeypatch.setattr(windows, "utc_now", lambda: at + timedelta(seconds=time.monotonic() - started))
    with Said() as said:
        running = Running(config(windows=["Mon-Sun 09:00-10:00 UTC"]))
        pull = running.pull_request(github)
        pass_check(github, pull.head_sha)
        review = github.as_user("alice").review(pull.number, "APPROVE")
        deployed = running.join()
    assert windows.utc_now() >= opening, "merged before the window opened"
    waiting = f"Approved by alice (GitHub review {review.id}) outside the change windows of stage: waiting for "
    assert any(line.startswith(waiting) for line in said)
    assert not any(line.startswith("Auto-merge enabled") for line in said)  # GitHub would not wait for the window
    assert deployed.commit == github.remote.head()


def test_a_base_moved_under_auto_merge_stops_it_before_the_update_and_the_new_head_needs_its_own_review(
    github: GitHubWorld, config: Callable[..., PromoConfig]
) -> None:
    running = Running(config())
    pull = running.pull_request(github)
    github.as_user("alice").review(pull.number, "APPROVE")  # lint pending: auto-merge is enabled for this head
    wait_until(lambda: github.as_user("promo").get(pull.number).auto_merge)
    dev = f"{ROOT}/dev/preprod/hello.yaml"
    github.remote.commit({dev: application("hello", "dev", "0.3.0-rc.1234567")}, "dev moved on")
    wait_until(lambda: github.as_user("promo").get(pull.number).head_sha != pull.head_sha)  # updated by the run
    updated = github.as_user("promo").get(pull.number)
    assert not updated.auto_merge  # GitHub would keep it through promo's update: promo stopped it first
    pass_check(github, updated.head_sha)
    github.as_user("carol").review(pull.number, "APPROVE")  # a writer, enough for GitHub, not one of stage's approvers
    time.sleep(0.3)  # many polls: nothing merges the updated head before an approver reviewed it
    assert running.thread.is_alive() and github.remote.read(STAGE) == application("hello", "stage", SHOWN)
    review = github.as_user("bob").review(pull.number, "APPROVE", commit=updated.head_sha)
    deployed = running.join()
    assert deployed.approved_by == f"bob (GitHub review {review.id})"
    assert_promos_message(github, deployed.approved_by)
