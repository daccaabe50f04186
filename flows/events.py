"""The git.push event: what CI (or a git hook) sends, and what starts a publish-dev deployment.

The contract, in one place, shared by the sender (`promo notify-push`, ``emit_push_event``) and the deployment
trigger (deployments/deploy.py):

    event     git.push
    resource  prefect.resource.id = promo.app.<app>, promo.app = <app>, promo.branch = <branch>, promo.sha = <sha>
    payload   {"app": <app>, "sha": <sha>, "branch": <branch>}

The trigger matches the resource id and the branch label (globs: the app repository's branch and ``hotfix-*``), and
passes ``event.payload.sha`` and ``event.payload.branch`` to the flow, which validates them again.
"""

from __future__ import annotations

from prefect.events import Event, emit_event
from prefect.events.worker import EventsWorker

PUSH_EVENT = "git.push"
HOTFIX_BRANCHES = "hotfix-*"
BRANCH_LABEL = "promo.branch"
_DRAIN_SECONDS = 10.0


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
