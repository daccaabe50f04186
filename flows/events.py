"""The events that start promo's deployments: git.push (publish-dev) and a pull request decided on GitHub
(watch-pull-requests).

git.push is what CI (or a git hook) sends and what starts a publish-dev deployment.

The contract, in one place, shared by the sender (`promo notify-push`, ``emit_push_event``) and the deployment
trigger (deployments/deploy.py):

    event     git.push
    resource  prefect.resource.id = promo.app.<app>, promo.app = <app>, promo.branch = <branch>, promo.sha = <sha>
    payload   {"app": <app>, "sha": <sha>, "branch": <branch>}

The trigger matches the resource id and the branch label (globs: the app repository's branch and ``hotfix-*``), and
passes ``event.payload.sha`` and ``event.payload.branch`` to the flow, which validates them again.

A pull request decided on GitHub is what `promo relay-github-webhooks` sends (or a Prefect Cloud webhook, set up to
send the same) and what starts watch-pull-requests at once, instead of at its next minute:

    event     github.pull_request_review.submitted | github.pull_request.closed   (github.<X-GitHub-Event>.<action>)
    resource  prefect.resource.id = github.pull_request.<owner>/<name>/<number>, github.repository = <owner>/<name>
              (lowercase: GitHub's names are not case-sensitive, the trigger's match is), github.head_ref = <branch>
    payload   {"repository", "number", "head_ref", "action", "review_state"}   (review_state null for a close)
    id        derived from X-GitHub-Delivery, so a redelivery of one delivery is one event to the trigger

The trigger matches the app's GitOps repository and its promotion branches. The watcher it starts takes nothing from
the event: it reads each pull request from GitHub, so an event (forged or replayed) can cost a run, never decide a gate.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from prefect.events import Event, emit_event
from prefect.events.worker import EventsWorker

from promo.forges.github_webhooks import DECIDING_ACTIONS, PullRequestDecision

PUSH_EVENT = "git.push"
HOTFIX_BRANCHES = "hotfix-*"
BRANCH_LABEL = "promo.branch"
_DRAIN_SECONDS = 10.0
PULL_REQUEST_DECISION_EVENTS = tuple(f"github.{kind}.{action}" for kind, action in DECIDING_ACTIONS)  # GitHub's words
REPOSITORY_LABEL = "github.repository"
HEAD_REF_LABEL = "github.head_ref"


def push_resource_id(app: str) -> str:
    return f"promo.app.{app}"


def push_branches(default_branch: str = "main") -> list[str]:
    """Branches whose pushes publish to the first environment, as globs the trigger matches (fnmatch)."""
    return list(dict.fromkeys([default_branch, HOTFIX_BRANCHES]))


def branch_publishes(branch: str, default_branch: str = "main") -> bool:
    from fnmatch import fnmatchcase

    return any(fnmatchcase(branch, pattern) for pattern in push_branches(default_branch))


def push_resource(app: str, sha: str, branch: str) -> dict[str, str]:
    return {
        "prefect.resource.id": push_resource_id(app),
        "prefect.resource.name": app,
        "promo.app": app,
        BRANCH_LABEL: branch,
        "promo.sha": sha,
    }


def emit_push_event(app: str, sha: str, branch: str) -> Event | None:
    """Send ``git.push`` to the Prefect API in use and wait until it is handed over (None: events are off).

    Callers validate ``sha`` and ``branch`` first; the flow validates them again.
    """
    event = emit_event(
        PUSH_EVENT,
        resource=push_resource(app, sha, branch),
        payload={"app": app, "sha": sha, "branch": branch},
    )
    EventsWorker.drain_all(timeout=_DRAIN_SECONDS)  # a CLI exits right after: send now, not at interpreter exit
    return event


def decision_event(decision: PullRequestDecision, delivery: str | None) -> dict[str, Any]:
    """The event, as the API's ``POST /events`` takes it, that says ``decision`` happened on GitHub."""
    repository = decision.repository.lower()
    return {
        "id": str(_event_id(delivery)),
        "occurred": datetime.now(UTC).isoformat(),
        "event": PULL_REQUEST_DECISION_EVENTS[DECIDING_ACTIONS.index((decision.kind, decision.action))],
        "resource": {
            "prefect.resource.id": f"github.pull_request.{repository}/{decision.number}",
            "prefect.resource.name": f"{decision.repository}#{decision.number}",
            REPOSITORY_LABEL: repository,
            HEAD_REF_LABEL: decision.head_ref,
        },
        "payload": {
            "repository": decision.repository,
            "number": decision.number,
            "head_ref": decision.head_ref,
            "action": decision.action,
            "review_state": decision.review_state,
        },
    }


def _event_id(delivery: str | None) -> UUID:
    """GitHub's delivery GUID as the event's id: the server evaluates an id once, so a redelivery starts nothing."""
    if not delivery:
        return uuid4()
    try:
        return UUID(delivery)
    except ValueError:
        return uuid5(NAMESPACE_URL, f"github-delivery:{delivery}")
