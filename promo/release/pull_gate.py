"""A gate that is a GitHub pull request: its branch, its labels, and what its reviews decide.

With ``write: pull-request`` an environment's write is a pull request from ``promo/<app>/<env>/<version>`` into the
GitOps branch. With ``approval: pull-request`` (its default) the gate is a review: an APPROVED review of the pull
request's current head by a login on the environment's ``approvers`` (anyone, when none are listed). GitHub proves
who submitted a review (the token's user); the Prefect form only records a name typed into it. A review by someone
off the list counts for nothing, either way; a CHANGES_REQUESTED review by someone who could approve rejects the
promotion with their words, as does closing the pull request. No Prefect here: flows/pull_request.py runs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from promo.errors import ApprovalRejected
from promo.forges.github_pulls import GitHubPullRequests, PullRequestState, Review

BRANCH_PREFIX = "promo"
# A run suspended until its pull request is decided carries it, with app:, env: and pr:<number> (the watcher's keys).
PULL_REQUEST_GATE_TAG = "promo-pr-gate"


def promotion_branch(app: str, env: str, version: str) -> str:
    """The branch of the pull request that moves ``app`` to ``version`` in ``env``."""
    return f"{environment_prefix(app, env)}{version}"


def environment_prefix(app: str, env: str) -> str:
    """What every promotion branch of ``app`` into ``env`` starts with (a newer one closes the older ones)."""
    return f"{BRANCH_PREFIX}/{app}/{env}/"


def branch_version(branch: str, app: str, env: str) -> str | None:
    """The version a promotion branch of ``app`` into ``env`` moves; None for another branch."""
    prefix = environment_prefix(app, env)
    return branch.removeprefix(prefix) if branch.startswith(prefix) else None


def pull_request_labels(app: str, env: str) -> list[str]:
    return [f"app:{app}", f"env:{env}"]


@dataclass(frozen=True)
class ReviewDecision:
    """The review that passed the gate: who (a GitHub login, proven by their token) and which review."""

    login: str
    review_id: int
    comment: str

    @property
    def trailer(self) -> str:
        """The ``Approved-By`` value of the commit that lands: ``alice (GitHub review 7)``."""
        return f"{self.login} ({self.approved_via})"

    @property
    def approved_via(self) -> str:
        return f"GitHub review {self.review_id}"


def decide(
    reviews: Sequence[Review], head_sha: str, approvers: Sequence[str], *, title: str, url: str
) -> ReviewDecision | None:
    """The approval of ``head_sha`` by an approver, None while there is none; a request for changes by someone
    who could approve raises ApprovalRejected with their login and words.

    Each reviewer's latest APPROVED or CHANGES_REQUESTED review is their word (a comment or a dismissed review
    changes nothing but a dismissed approval's weight: none). An approval counts only for the head it was given on."""
    latest: dict[str, Review] = {}
    for review in reviews:
        if review.login is None or (approvers and review.login not in approvers):
            continue  # a deleted account, or someone whose review does not count here
        if review.state in ("APPROVED", "CHANGES_REQUESTED", "DISMISSED"):
            latest[review.login] = review
    for login, review in latest.items():
        if review.state == "CHANGES_REQUESTED":
            words = review.body.strip() or "no reason given"
            raise ApprovalRejected(
                f"{title} was rejected by {login} in a review of {url}: {words}",
                "nothing was written; start the promotion again once the change is acceptable",
            )
    for login, review in latest.items():
        if review.state == "APPROVED" and review.commit_id == head_sha:
            return ReviewDecision(login, review.id, review.body.strip())
    return None


def closed_unmerged(pull: PullRequestState, title: str) -> ApprovalRejected:
    return ApprovalRejected(
        f"{title}: pull request #{pull.number} ({pull.html_url}) was closed without merging",
        "nothing was written; start the promotion again if it should still move",
    )


@dataclass(frozen=True)
class PullRequestGate:
    """A promotion waiting for a review of its pull request, as `promo pending` lists it."""

    app: str
    env: str
    version: str
    pull_request: dict[str, object]  # {number, url (the API's), html_url}


def waiting_pull_requests(pulls: GitHubPullRequests, app: str, envs: Sequence[str], base: str) -> list[PullRequestGate]:
    """The open promotion pull requests of ``app`` into each of ``envs``, oldest first."""
    gates = []
    for env in envs:
        for pull in pulls.list_open(base, environment_prefix(app, env)):
            version = branch_version(pull.head, app, env) or "?"
            link = {"number": pull.number, "url": pull.url, "html_url": pull.html_url}
            gates.append(PullRequestGate(app, env, version, link))
    return gates


def review_gate(
    pulls: GitHubPullRequests, gate: PullRequestGate, *, approve: bool, comment: str = ""
) -> tuple[str, Review]:
    """Submit the review that decides ``gate``, as the user whose token ``pulls`` holds: (their login, the review).
    A rejection needs ``comment``, the words the run fails with."""
    login = pulls.whoami()
    number = int(gate.pull_request["number"])  # type: ignore[call-overload]
    head = pulls.get(number).head_sha
    event = "APPROVE" if approve else "REQUEST_CHANGES"
    return login, pulls.review(number, event, body=comment, commit=head)
