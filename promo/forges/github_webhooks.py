"""GitHub webhook deliveries: the signature GitHub puts on them, and the pull-request decisions promo waits for.

A delivery is a POST of a JSON body with three headers: ``X-GitHub-Event`` (its kind: ``pull_request``,
``pull_request_review``, ``check_run``...), ``X-GitHub-Delivery`` (a GUID, which a redelivery keeps) and
``X-Hub-Signature-256``: ``sha256=`` and the hex HMAC-SHA256 of the raw body under the webhook's secret. The
signature covers the body only, not the time, so a captured delivery replays; that is harmless here because what a
delivery says only makes promo look at the pull request again (the decision is read from GitHub, never from it).

Of everything GitHub sends, a suspended pull-request gate waits for two things: a submitted review that approves or
requests changes, and the pull request being closed (merged or not). Payload field names are GitHub's webhook ones:
``action``, ``pull_request.number``, ``pull_request.head.ref``, ``repository.full_name``, ``review.state`` (lowercase
in webhooks: ``approved``, ``changes_requested``, ``commented``). No Prefect here.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

EVENT_HEADER = "X-GitHub-Event"
DELIVERY_HEADER = "X-GitHub-Delivery"
SIGNATURE_HEADER = "X-Hub-Signature-256"
_SIGNATURE_PREFIX = "sha256="

REVIEW_EVENT = "pull_request_review"
PULL_REQUEST_EVENT = "pull_request"
# (event kind, action) pairs that can decide a gate, and the review states that decide (a comment does not)
DECIDING_ACTIONS = ((REVIEW_EVENT, "submitted"), (PULL_REQUEST_EVENT, "closed"))
DECIDING_REVIEW_STATES = ("approved", "changes_requested")


def signature(secret: bytes, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends with ``body`` for a webhook with ``secret``."""
    return _SIGNATURE_PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def signature_matches(secret: bytes, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is the signature of exactly these bytes under ``secret`` (a constant-time comparison)."""
    if not secret or not header:
        return False
    return hmac.compare_digest(signature(secret, body).encode(), header.strip().encode())


def delivery_headers(kind: str, delivery: str, secret: bytes, body: bytes) -> dict[str, str]:
    """The headers GitHub sends with a delivery (what the sandbox's stand-in sends, and what tests play)."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/promo-standin",
        EVENT_HEADER: kind,
        DELIVERY_HEADER: delivery,
        SIGNATURE_HEADER: signature(secret, body),
    }


@dataclass(frozen=True)
class PullRequestDecision:
    """A delivery that may decide a pull-request gate: only the fields promo passes on, never the whole payload."""

    kind: str  # REVIEW_EVENT or PULL_REQUEST_EVENT
    action: str  # submitted, closed
    repository: str  # owner/name as GitHub spells it
    number: int
    head_ref: str
    review_state: str | None  # approved or changes_requested for a review; None for a closed pull request


def pull_request_decision(kind: str, payload: Any) -> PullRequestDecision | None:
    """What a (verified) delivery of ``kind`` tells a waiting gate; None when it cannot decide one: another kind of
    event, another action (opened, synchronize, labeled, edited...), a review that only comments, or a payload
    without the fields GitHub always sends with these events."""
    if not isinstance(payload, dict):
        return None
    action = payload.get("action")
    if (kind, action) not in DECIDING_ACTIONS:
        return None
    pull, repository = payload.get("pull_request"), payload.get("repository")
    review = payload.get("review") if kind == REVIEW_EVENT else None
    try:
        number, head_ref, full_name = int(pull["number"]), str(pull["head"]["ref"]), str(repository["full_name"])
        state = str(review["state"]).lower() if kind == REVIEW_EVENT else None
    except (KeyError, TypeError, ValueError):
        return None
    if kind == REVIEW_EVENT and state not in DECIDING_REVIEW_STATES:
        return None
    return PullRequestDecision(kind, str(action), full_name, number, head_ref, state)
