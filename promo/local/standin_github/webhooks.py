"""The GitHub stand-in's webhook deliveries: what it sends when a review is submitted or a pull request closed.

Only these two (``pull_request_review``/``submitted`` and ``pull_request``/``closed``, a merge included), to the URLs
of its settings' ``webhooks``, signed with each hook's secret (read from a file, as the sandbox writes it) and with
GitHub's headers (``X-GitHub-Event``, ``X-GitHub-Delivery``, ``X-Hub-Signature-256``). The payload carries GitHub's
webhook fields for what promo reads (``action``, ``number``, ``pull_request`` as the REST API shows it, with
``head.ref``; ``repository.full_name``; ``review.state`` lowercase, as webhooks spell it; ``sender``); it is not every
field GitHub sends. Deliveries go out one at a time from a queue, after the change they report, and like GitHub's they
are not retried: a failed one is a line in the stand-in's log.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from promo.forges.github_webhooks import PULL_REQUEST_EVENT, REVIEW_EVENT, delivery_headers
from promo.local.standin_github import shapes
from promo.local.standin_github.world import World

log = logging.getLogger("promo.local.standin_github")

_TIMEOUT_SECONDS = 10.0  # GitHub gives a receiver 10 s to answer


class Webhook(BaseModel):
    """A repository webhook: where deliveries go, and the file holding the secret they are signed with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    secret_file: Path
    repositories: list[str] = Field(default_factory=list, description="repository names it is on; none: all")


class Deliveries:
    """Sends what ``World.announce`` reports to every webhook configured for the repository."""

    def __init__(self, hooks: list[Webhook]) -> None:
        self.hooks = hooks
        self.outbox: queue.Queue[tuple[Webhook, str, bytes]] = queue.Queue()
        threading.Thread(target=self._deliver_forever, name="webhook-deliveries", daemon=True).start()

    def announce(self, world: World, name: str, record: dict[str, Any], login: str,
                 review: dict[str, Any] | None = None) -> None:  # fmt: skip
        """Queue the delivery of ``review`` submitted by ``login`` on pull request ``record`` of repository ``name``,
        or without a review, of ``login`` closing it (a merge closes it too)."""
        hooks = [hook for hook in self.hooks if not hook.repositories or name in hook.repositories]
        if not hooks:
            return
        kind = REVIEW_EVENT if review is not None else PULL_REQUEST_EVENT
        body = json.dumps(payload(world, name, record, login, review)).encode()
        for hook in hooks:
            self.outbox.put((hook, kind, body))

    def _deliver_forever(self) -> None:
        while True:
            hook, kind, body = self.outbox.get()
            delivery = str(uuid.uuid4())
            try:
                headers = delivery_headers(kind, delivery, hook.secret_file.read_bytes().strip(), body)
                answer = httpx.post(hook.url, content=body, headers=headers, timeout=_TIMEOUT_SECONDS)
                log.info("webhook delivery %s (%s) to %s: HTTP %s", delivery, kind, hook.url, answer.status_code)
            except (OSError, httpx.HTTPError) as error:
                log.warning("webhook delivery %s (%s) to %s failed: %s", delivery, kind, hook.url, error)


def payload(world: World, name: str, record: dict[str, Any], login: str,
            review: dict[str, Any] | None) -> dict[str, Any]:  # fmt: skip
    """The body GitHub sends for a submitted review (``review`` given) or a closed pull request."""
    # a webhook's repository has times and a few fields the REST one may leave out; the stand-in keeps no times
    times = {"created_at": 0, "updated_at": shapes.now()}
    repo = {**world.repository(name), **times, "topics": [], "visibility": "private"}
    users, head = world.users(), world.head_sha(name, record)
    base = world.repos[name].commit_of(f"refs/heads/{record['base']}") or head
    pull = shapes.pull(world.base, repo, record, users, head, base)  # mergeable unknown, as webhooks often say
    pull["active_lock_reason"] = None
    body: dict[str, Any] = {"number": record["number"], "pull_request": pull, "repository": repo,
                            "sender": users[login]}  # fmt: skip
    if review is None:
        return {"action": "closed", **body}
    shown = world.review_json(name, record, review)
    return {"action": "submitted", **body, "review": {**shown, "state": shown["state"].lower()}}
