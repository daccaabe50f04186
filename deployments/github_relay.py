"""`promo relay-github-webhooks`: GitHub webhook deliveries in, Prefect events out, for the open-source server.

Prefect Cloud turns an HTTP request into an event by itself (a webhook with a template); the open-source server has
no such endpoint, so this small HTTP server stands in front of it. Each delivery is answered in one step:

- a bad or missing ``X-Hub-Signature-256`` is refused (401), with one log line and nothing of the body echoed;
- a delivery promo does not need (another event, another action, a review that only comments) is answered 200 and
  dropped, as is GitHub's ``ping``;
- a pull request decided (promo.forges.github_webhooks) is posted to the Prefect API as the event flows/events.py
  defines (``POST /events``, the fields the trigger matches and nothing else of the payload), and answered 202 once
  the server took it; 502 when it did not, so GitHub's delivery log shows the failure and a redelivery can be sent.

The secret comes from a file or an environment variable, never the command line (the process list shows argv).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from promo.errors import InputError, PromoError
from promo.flows.events import decision_event
from promo.forges.github_webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    pull_request_decision,
    signature_matches,
)
from promo.release.gates import PrefectApi

log = logging.getLogger("promo.relay")

SECRET_ENV = "PROMO_GITHUB_WEBHOOK_SECRET"
# GitHub caps a payload at 25 MB; what promo reads fits in far less, and the body is held before it is verified.
MAX_BODY_BYTES = 5 * 1024 * 1024

Send = Callable[[dict[str, Any]], None]


def read_secret(secret_file: Path | None) -> bytes:
    """The webhook secret from ``secret_file``, else from $PROMO_GITHUB_WEBHOOK_SECRET; surrounding whitespace is
    not part of it (a file usually ends in a newline)."""
    if secret_file is not None:
        try:
            secret = secret_file.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise InputError(
                f"cannot read the webhook secret file {secret_file}: {error.strerror}",
                "pass --secret-file a readable file holding the GitHub webhook's secret",
            ) from None
        where = str(secret_file)
    else:
        secret, where = os.environ.get(SECRET_ENV, "").strip(), f"${SECRET_ENV}"
    if not secret:
        raise InputError(
            f"no GitHub webhook secret: {where} is empty or unset",
            f"put the webhook's secret in a file (--secret-file PATH) or in ${SECRET_ENV}; never on the command line",
        )
    return secret.encode()


@dataclass(frozen=True)
class Answer:
    status: int
    text: str


@dataclass(frozen=True)
class Relay:
    """What one delivery becomes: verified, then dropped or sent on as an event."""

    secret: bytes
    send: Send

    def handle(self, headers: Mapping[str, str], body: bytes) -> Answer:
        named = {key.lower(): value for key, value in headers.items()}  # HTTP header names are not case-sensitive
        kind, delivery = named.get(EVENT_HEADER.lower(), ""), named.get(DELIVERY_HEADER.lower(), "")
        signed = named.get(SIGNATURE_HEADER.lower())
        if not signature_matches(self.secret, body, signed):
            state = "bad" if signed else "missing"
            # the headers are unverified here: quoted and cut short, so that they stay one line of the log
            log.warning("refused delivery %.60r (%.40r): %s signature", delivery, kind, state)
            return Answer(401, f"{state} {SIGNATURE_HEADER}")
        if kind == "ping":
            return Answer(200, "pong")
        try:
            payload = json.loads(body)
        except ValueError:
            log.warning("refused delivery %s (%s): the body is not JSON", delivery or "-", kind)
            return Answer(400, "the body is not JSON: set the webhook's content type to application/json")
        decision = pull_request_decision(kind, payload)
        if decision is None:
            action = payload.get("action") if isinstance(payload, dict) else None
            log.info("ignored delivery %s: %s%s", delivery or "-", kind or "-", f"/{action}" if action else "")
            return Answer(200, "ignored: not a pull request decision")
        event = decision_event(decision, delivery)
        what = f"{event['event']} for {decision.repository}#{decision.number}"
        try:
            self.send(event)
        except PromoError as error:
            log.error("delivery %s: %s not sent: %s", delivery or "-", what, error.cause)
            return Answer(502, "the Prefect API did not take the event; redeliver once it is back")
        log.info("delivery %s: sent %s (event %s)", delivery or "-", what, event["id"])
        return Answer(202, f"sent {what}")


def prefect_sender(api: PrefectApi) -> Send:
    """Each event posted to the Prefect API at once: the delivery is answered only once the server took it."""

    def send(event: dict[str, Any]) -> None:
        with api.client() as client:
            api.call(client, "POST", "/events", [event])

    return send


class _Handler(BaseHTTPRequestHandler):
    relay: ClassVar[Relay]

    def do_POST(self) -> None:  # noqa: N802 (http.server's names)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            return self._answer(Answer(413, "payload too large"))
        self._answer(self.relay.handle(self.headers, self.rfile.read(length)))

    def do_GET(self) -> None:  # noqa: N802
        # a health check for a load balancer or a Kubernetes probe; deliveries are POSTs
        self._answer(Answer(200, "ok") if self.path == "/healthz" else Answer(405, "deliveries are POSTs"))

    def _answer(self, answer: Answer) -> None:
        data = (answer.text + "\n").encode()
        self.send_response(answer.status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        pass  # Relay.handle logs each delivery once, in its own words


def relay_server(relay: Relay, host: str, port: int) -> ThreadingHTTPServer:
    """An HTTP server for ``relay`` on ``host:port`` (port 0: a free one); ``serve_forever`` runs it."""
    handler = type("Handler", (_Handler,), {"relay": relay})
    return ThreadingHTTPServer((host, port), handler)
