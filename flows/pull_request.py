"""Writing into an environment through a pull request (``write: pull-request``), for a protected GitOps branch.

promo makes the commit it would push (same planning, same compare-and-swap base, same subject and trailers), pushes
it to ``promo/<app>/<env>/<version>`` and opens a pull request whose body is the gate page. With ``approval:
pull-request`` the gate is an approver's review of the pull request's head (promo/release/pull_gate.py); with
``approval: prefect`` the Prefect form was the gate and the pull request only satisfies branch protection. Then,
inside the environment's change windows, the run merges it, naming the reviewed head (``sha``), once the checks
GitHub requires pass (a failed one fails the run naming it; the others decide nothing); where the repository
allows auto-merge (and the environment has no windows) it lets GitHub merge that head instead, and polls until
GitHub did. The base moving in other files updates the branch first, the target moving closes the pull request
as stale. The landed commit keeps promo's subject and trailers, with ``Approved-By: <login> (GitHub review <id>)``.
A run that fails or is cancelled closes its pull request (which ends auto-merge too); nothing lands on the GitOps
branch but through the merge.

Locally the run waits by polling the pull request (``gate.poll_interval_seconds``, up to ``gate.timeout_seconds``),
and its own state on the server: cancelled from the UI, it ends in one line and closes the pull request. Under a
deployment it suspends, holding no process, and `watch-pull-requests` (flows/watch_pull_requests.py) resumes it once
the pull request is decided; it then starts again from the top and carries on here with the same pull request (a
closed one fails it). A suspended run cancelled from the UI has no process to close its pull request: the watcher
does (flows/pull_request_run.py tags each run with its pull request).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from prefect.exceptions import Pause

from promo.clients import gitops_pull_requests, gitops_repo
from promo.config import PromoConfig
from promo.errors import (
    ApprovalRejected, BaseMoved, ConflictError, HeadMoved, InputError, NotFound, NotMergeable, StaleBranch,
)
from promo.flows.gate_plan import wait_for_window_of
from promo.flows.pull_request_run import OwnRun, suspend, suspended_on, tag_waiting, under_deployment
from promo.flows.runinfo import run_logger
from promo.forges.github_pulls import Checks, GitHubPullRequests, PullRequestState, RequiredChecks
from promo.gitops.mirror import Mirror
from promo.gitops.repo import Proposal, WriteRequest, check_unmoved
from promo.release.pull_gate import (
    ReviewDecision,
    closed_unmerged,
    decide,
    promotion_branch,
    pull_request_labels,
)
from promo.tasks.gitops import propose_environment_version


ALREADY_THERE = ""  # ``_Waiting._merge``'s answer when the environment runs the version already, not by this merge


@dataclass(frozen=True)
class PullRequestWrite:
    commit: str | None  # None: the environment ran the version already
    review: ReviewDecision | None  # the review that passed the gate (approval: pull-request)
    pull_request: PullRequestState | None


def write_through_pull_request(
    config: PromoConfig,
    request: WriteRequest,
    *,
    page: str,
    sleep: Callable[[float], None] = time.sleep,
) -> PullRequestWrite:
    """Propose, wait for the gate, merge: the commit that landed on the GitOps branch, and the review that passed."""
    pulls = gitops_pull_requests(config)
    env, version = request.env, request.version
    branch = promotion_branch(config.app, env, version)
    earlier = suspended_on(pulls, env, branch)
    if earlier is not None and earlier.state == "closed" and not earlier.merged:
        # Resumed because someone closed it: that is the decision. Proposing again would open a second one.
        raise closed_unmerged(earlier, f"{config.app} {version} into {env}")
    propose = lambda: propose_environment_version(config, request, branch=branch)  # noqa: E731
    for attempt in (1, 2):
        try:
            proposal = propose()
        except StaleBranch:  # an earlier attempt's branch, made on a target that moved since
            stale = pulls.find_open(branch, config.gitops.branch)
            if stale is not None:
                pulls.close(stale.number, f"Stale: {env} of {config.app} moved since this change was made.")
            pulls.delete_branch(branch)
            proposal = propose()
        if proposal is None:
            return PullRequestWrite(None, None, None)
        try:
            pull = pulls.open(branch, config.gitops.branch, title=request.subject, body=page,
                              labels=pull_request_labels(config.app, env))  # fmt: skip
            break
        except InputError:
            # Another run of this promotion merged the pull request and deleted its branch between our proposal
            # and our open (GitHub: 422 "head invalid"): plan once more, which finds the version landed.
            if attempt == 2 or pulls.branch_sha(branch) is not None:
                raise
    run_logger().info("%s pull request #%s for %s into %s: %s", "Reusing" if proposal.reused else "Opened",
                      pull.number, version, env, pull.html_url)  # fmt: skip
    waiting = _Waiting(config, pulls, request, proposal, sleep)
    try:
        commit, review = waiting.until_merged(pull)
    except Pause:  # suspended until the pull request is decided: it stays open
        raise
    except BaseException as error:  # a failed or cancelled run closes its pull request
        _close_unmerged(pulls, pull.number, f"Closed by promo: the run ended without merging it ({error}).")
        raise
    pulls.delete_branch(branch)
    return PullRequestWrite(commit, review, pulls.get(pull.number))


class _Waiting:
    """One pull request polled until it is merged, or the run fails with why."""

    passed: ReviewDecision | None = None  # the review whose head GitHub's auto-merge merges
    auto_merging: str | None = None  # the head this run let GitHub auto-merge
    required: RequiredChecks | None = None  # read once per run
    auto_merge_allowed: bool | None = None  # read once per run

    def __init__(
        self,
        config: PromoConfig,
        pulls: GitHubPullRequests,
        request: WriteRequest,
        proposal: Proposal,
        sleep: Callable[[float], None],
    ) -> None:
        env, version = request.env, request.version
        self.config, self.pulls, self.env, self.version = config, pulls, env, version
        self.expected, self.proposal, self.trailers, self.sleep = request.expected, proposal, request.trailers, sleep
        self.settings = config.environment(env)
        self.title = f"{config.app} {version} into {env}"
        self.said: set[str] = set()  # what the log said already, so a long wait logs each thing once

    def until_merged(self, pull: PullRequestState) -> tuple[str | None, ReviewDecision | None]:
        """The commit that landed (None: the environment ran the version already, by another write)."""
        deadline = time.monotonic() + self.config.gate.timeout_seconds
        review_gate = self.settings.gate_kind == "pull-request"
        tag_waiting(self.config.app, self.env, pull)
        own_run = OwnRun(self.title)
        while True:
            own_run.check()
            pull = self.pulls.get(pull.number)
            if pull.merged and pull.merge_commit_sha:
                return pull.merge_commit_sha, self.passed
            if pull.state == "closed":
                raise closed_unmerged(pull, self.title)
            review = None
            if review_gate:
                reviews = self.pulls.reviews(pull.number)
                review = decide(reviews, pull.head_sha, self.settings.approvers, title=self.title, url=pull.html_url)
                if review is None and pull.auto_merge:  # its head moved past the approval: GitHub must not merge it
                    self._stop_auto_merge(pull)
                if review is None:
                    self._say(f"review-{pull.head_sha}", "Waiting for an approving review of %s by %s: %s",
                              self.title, ", ".join(self.settings.approvers) or "anyone", pull.html_url)  # fmt: skip
            if review is not None or not review_gate:
                landed = self._merge(pull, review)
                if landed == ALREADY_THERE:
                    return None, review
                if landed is not None:
                    return landed, review
            if time.monotonic() > deadline:
                raise ApprovalRejected(
                    f"{self.title}: pull request #{pull.number} was not approved and merged within "
                    f"{self.config.gate.timeout_seconds} s",
                    "start the promotion again, or raise gate.timeout_seconds in promo.yaml",
                )
            if review_gate and review is None and under_deployment():
                suspend(self.env, pull, int(deadline - time.monotonic()))
            self.sleep(self.config.gate.poll_interval_seconds)

    def _merge(self, pull: PullRequestState, review: ReviewDecision | None) -> str | None:
        """Merge ``pull`` at its reviewed head: the landed commit, or None when it cannot be yet (outside the change
        windows it waits first; checks pending, the branch just updated, GitHub's rules unmet, auto-merge enabled).
        A moved target or a failed required check raises."""
        approver = review.trailer if review is not None else self.trailers.approved_by or "the gate"
        going_back = self.trailers.rollback_of is not None
        wait_for_window_of(self.config, self.env, approver, self.trailers.override_reason, going_back)
        repo = gitops_repo(self.config)
        snapshot = repo.snapshot()
        clusters = self.settings.clusters
        now = repo.cluster_versions(self.config.app, self.env, clusters, snapshot=snapshot)
        try:
            check_unmoved(self.config.app, self.env, now, self.expected, self.version, "the promotion")
        except ConflictError as moved:
            _close_unmerged(self.pulls, pull.number, f"Closed as stale: {moved.args[0]}.")
            raise
        if set(now.values()) == {self.version}:  # landed meanwhile: by this pull request (another run merged it)?
            latest = self.pulls.get(pull.number)
            if latest.merged and latest.merge_commit_sha:
                return latest.merge_commit_sha
            _close_unmerged(self.pulls, pull.number, f"Closed: {self.env} runs {self.version} already.")
            return ALREADY_THERE
        try:
            head = repo.mirror.fetch_branch(pull.head)
        except NotFound:  # deleted as we fetched it: another run merged the pull request, read it again
            return None
        if head != pull.head_sha:
            return None  # pushed to since it was read: read it again
        if not repo.mirror.is_ancestor(snapshot.commit, head):
            self._stop_auto_merge(pull)  # GitHub keeps auto-merge through a writer's push: the update needs its gate
            self.pulls.update_branch(pull.number, head)
            run_logger().info("The GitOps branch moved in other files: updated the branch of pull request #%s",
                              pull.number)  # fmt: skip
            if review is not None and any(r.state == "DISMISSED" for r in self.pulls.reviews(pull.number)):
                run_logger().warning("The repository dismisses stale reviews: pull request #%s needs a new review "
                                     "of its updated head (%s)", pull.number, pull.html_url)  # fmt: skip
            return None
        self._check_holds_only_the_proposal(pull, repo.mirror, snapshot.commit, head)
        required = self._required_checks()
        checks = self.pulls.checks(head)
        self._fail_on_checks(pull, checks, required)
        if self._auto_merge():
            return self._enable_auto_merge(pull, review)
        if checks.state(required) == "pending":
            self._say(f"checks-{head}", "Waiting for the checks of pull request #%s", pull.number)
            return None
        try:
            merged = self.pulls.merge(pull.number, head, self.settings.merge_method, **self._message(review))
        except (HeadMoved, BaseMoved):
            return None  # read again: a new head needs its own review, a moved base its update
        except NotMergeable as refused:
            self._say(f"refused-{head}-{refused}", "GitHub does not merge it yet: %s", refused)
            return None
        run_logger().info("Merged pull request #%s into %s as %s", pull.number, self.config.gitops.branch,
                          merged.sha[:12])  # fmt: skip
        return merged.sha

    def _check_holds_only_the_proposal(self, pull: PullRequestState, mirror: Mirror, base: str, head: str) -> None:
        """What merging ``head`` (which contains ``base``) would write is promo's proposal, file for file, or the
        pull request is closed and the run fails: a commit pushed to promo's branch by anyone else would otherwise
        land under promo's subject and trailers, which an approver through the Prefect form never saw (and a review
        approves the pull request, not a rewrite of what promo says it moves)."""
        files = self.proposal.files
        changed = mirror.changed_paths(base, head)
        if changed == set(files) and mirror.read_files(head, sorted(files)) == dict(files):
            return
        _close_unmerged(self.pulls, pull.number, "Closed by promo: its branch holds changes promo did not make.")
        raise ConflictError(
            f"{self.title}: pull request #{pull.number} ({pull.html_url}) holds changes promo did not make "
            f"({', '.join(sorted(changed ^ set(files))) or 'other contents'} at {head[:12]}); nothing was written",
            "push nothing to promo's branches; start the promotion again",
        )

    def _fail_on_checks(self, pull: PullRequestState, checks: Checks, required: frozenset[str] | None) -> None:
        """A failed required check (any check, when the required ones cannot be read) closes the pull request and
        fails the run naming it; a failed check GitHub does not require is said once and decides nothing."""
        failed = checks.failed(required)
        if failed:
            names = ", ".join(f"{check.name} ({check.detail})" for check in failed)
            _close_unmerged(self.pulls, pull.number, f"Closed by promo: the check {names} failed.")
            raise ConflictError(
                f"{self.title}: the check {names} failed on pull request #{pull.number} ({pull.html_url}); "
                "nothing was written",
                "fix what the check reports, then start the promotion again",
            )
        for check in checks.failed():
            self._say(f"optional-{checks.sha}-{check.name}", "The check %s failed on pull request #%s (%s): %s "
                      "does not require it, so it decides nothing", check.name, pull.number, check.detail,
                      self.config.gitops.branch)  # fmt: skip

    def _required_checks(self) -> frozenset[str] | None:
        """The checks GitHub requires to merge into the GitOps branch, read once; None (every check counts) when
        the token may not read them."""
        if self.required is None:
            self.required = self.pulls.required_checks(self.config.gitops.branch)
            if self.required.names is None:
                run_logger().warning("Which checks %s requires is not readable (%s): every check of the pull "
                                     "request counts", self.config.gitops.branch, self.required.unreadable)  # fmt: skip
        return self.required.names

    def _auto_merge(self) -> bool:
        """Whether GitHub merges (auto-merge): where the repository allows it, read once, and the environment has no
        change windows (GitHub would merge whenever the checks pass, open or not)."""
        if self.settings.windows:
            return False
        if self.auto_merge_allowed is None:
            allowed = self.pulls.auto_merge_allowed()
            if allowed is None:
                run_logger().info("GitHub does not show whether the GitOps repository allows auto-merge (it shows it "
                                  "to administration read only): promo merges itself")  # fmt: skip
            self.auto_merge_allowed = bool(allowed)
        return self.auto_merge_allowed

    def _enable_auto_merge(self, pull: PullRequestState, review: ReviewDecision | None) -> str | None:
        """Let GitHub merge the approved head, with promo's message, once its rules allow: None, and the run polls
        until it did; the landed commit when GitHub answers that it may merge now (then promo merges it)."""
        if pull.auto_merge and self.auto_merging == pull.head_sha:
            return None
        self._stop_auto_merge(pull)  # enabled for another head, or by an earlier execution of the run
        try:
            merged = self.pulls.enable_auto_merge(pull, self.settings.merge_method, **self._message(review))
        except (HeadMoved, BaseMoved):
            return None
        except NotMergeable as refused:
            self._say(f"refused-{pull.head_sha}-{refused}", "GitHub does not merge it yet: %s", refused)
            return None
        self.passed = review
        if merged is not None:
            run_logger().info("Merged pull request #%s into %s as %s (GitHub had nothing left to wait for)",
                              pull.number, self.config.gitops.branch, merged.sha[:12])  # fmt: skip
            return merged.sha
        self.auto_merging = pull.head_sha
        run_logger().info("Auto-merge enabled for pull request #%s at %s: GitHub merges it once its required checks "
                          "pass", pull.number, pull.head_sha[:12])  # fmt: skip
        return None

    def _stop_auto_merge(self, pull: PullRequestState) -> None:
        if pull.auto_merge:
            self.pulls.disable_auto_merge(pull)
            self.auto_merging = self.passed = None

    def _message(self, review: ReviewDecision | None) -> dict[str, str]:
        """The landed commit's title and message: promo's subject, body and trailers, with the review's approver."""
        subject, body = self.proposal.message.split("\n\n")[:2]
        trailers = self.trailers
        if review is not None:
            trailers = replace(trailers, approved_by=review.trailer, approval_comment=review.comment or None)
        return {"title": subject, "message": f"{body}\n\n{trailers.render()}\n"}

    def _say(self, key: str, line: str, *args: object) -> None:
        if key not in self.said:
            self.said.add(key)
            run_logger().info(line, *args)


def _close_unmerged(pulls: GitHubPullRequests, number: int, comment: str) -> None:
    """Close a pull request the run gives up on; one closed or merged already stays as it is."""
    try:
        if pulls.get(number).state == "open":
            pulls.close(number, comment)
    except Exception as error:  # noqa: BLE001 (the run's own failure is the one to report)
        run_logger().warning("Pull request #%s was left open (%s): close it by hand", number, error)
