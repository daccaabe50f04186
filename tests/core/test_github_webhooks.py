"""GitHub webhook deliveries: their signature, which of them can decide a pull-request gate, and what the relay
(`promo relay-github-webhooks`) answers and sends for each, with the Prefect API replaced by a list."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
import typer

from promo.cli.main import app
from promo.deployments.github_relay import Relay, read_secret, relay_server
from promo.errors import InputError, TransientError
from promo.forges.github_webhooks import (
    PullRequestDecision,
    delivery_headers,
    pull_request_decision,
    signature,
    signature_matches,
)

SECRET = b"a webhook secret"
DELIVERY = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
BRANCH = "promo/hello/stage/0.2.0-rc.abc1234"


def review(state: str = "approved", action: str = "submitted", repository: str = "Sandbox/GitOps") -> dict[str, Any]:
    return {
        "action": action,
        "review": {"id": 80, "state": state, "body": "a secret-looking comment", "user": {"login": "alice"}},
        "pull_request": {"number": 7, "head": {"ref": BRANCH, "sha": "a" * 40}, "title": "promote(hello)"},
        "repository": {"full_name": repository},
        "sender": {"login": "alice"},
    }


def closed(merged: bool = True) -> dict[str, Any]:
    payload = review()
    del payload["review"]
    return {**payload, "action": "closed", "pull_request": {**payload["pull_request"], "merged": merged}}


def test_the_signature_is_githubs_on_its_published_example():
    # docs.github.com, "Validating webhook deliveries": the values it says a correct implementation gives
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert signature(b"It's a Secret to Everybody", b"Hello, World!") == expected


def test_only_the_signature_of_these_very_bytes_under_this_secret_matches():
    body, other = b'{"action":"submitted"}', b'{"action":"closed"}'
    good = signature(SECRET, body)
    assert signature_matches(SECRET, body, good)
    assert not signature_matches(SECRET, body, good[:-1] + ("0" if good[-1] != "0" else "1"))  # one digit off
    assert not signature_matches(SECRET, body, None) and not signature_matches(SECRET, body, "")  # missing
    assert not signature_matches(SECRET, other, good)  # another body replayed with this signature
    assert not signature_matches(b"another secret", body, good)
    assert not signature_matches(b"", body, signature(b"", body))  # no secret verifies nothing
    assert not signature_matches(SECRET, body, good.removeprefix("sha256="))  # GitHub's form only


@pytest.mark.parametrize(
    ("kind", "payload", "decided"),
    [
        ("pull_request_review", review("approved"), PullRequestDecision(
            "pull_request_review", "submitted", "Sandbox/GitOps", 7, BRANCH, "approved")),
        ("pull_request_review", review("CHANGES_REQUESTED"), PullRequestDecision(
            "pull_request_review", "submitted", "Sandbox/GitOps", 7, BRANCH, "changes_requested")),
        ("pull_request", closed(merged=False), PullRequestDecision(
            "pull_request", "closed", "Sandbox/GitOps", 7, BRANCH, None)),
        ("pull_request_review", review("commented"), None),  # a comment decides nothing
        ("pull_request_review", review(action="dismissed"), None),
        ("pull_request", {**closed(), "action": "synchronize"}, None),  # a push to the branch
        ("pull_request", {**closed(), "action": "opened"}, None),
        ("check_run", {**closed(), "action": "completed"}, None),
        ("push", {"ref": "refs/heads/main"}, None),
        ("pull_request", {"action": "closed", "pull_request": {"number": 7}}, None),  # not what GitHub sends
        ("pull_request", ["not", "an", "object"], None),
    ],
)  # fmt: skip
def test_only_a_deciding_review_or_a_close_is_a_decision(kind: str, payload: Any, decided: PullRequestDecision | None):
    assert pull_request_decision(kind, payload) == decided


class Sent(list):
    """The Prefect API, as the relay sees it: each event it is sent."""

    def __call__(self, event: dict[str, Any]) -> None:
        self.append(event)


def deliver(relay: Relay, kind: str, payload: Any, *, secret: bytes = SECRET, body: bytes | None = None):
    body = json.dumps(payload).encode() if body is None else body
    return relay.handle(delivery_headers(kind, DELIVERY, secret, body), body)


def test_a_decided_review_is_sent_as_the_event_the_trigger_matches_with_only_the_fields_it_needs():
    sent = Sent()
    answer = deliver(Relay(SECRET, sent), "pull_request_review", review("approved"))
    assert (answer.status, answer.text) == (202, "sent github.pull_request_review.submitted for Sandbox/GitOps#7")
    [event] = sent
    assert event["id"] == DELIVERY  # a redelivery keeps its GUID: the server evaluates it once
    assert event["event"] == "github.pull_request_review.submitted"
    assert event["resource"] == {
        "prefect.resource.id": "github.pull_request.sandbox/gitops/7",
        "prefect.resource.name": "Sandbox/GitOps#7",
        "github.repository": "sandbox/gitops",  # lowercase, as the trigger matches it
        "github.head_ref": BRANCH,
    }
    assert event["payload"] == {
        "repository": "Sandbox/GitOps", "number": 7, "head_ref": BRANCH, "action": "submitted",
        "review_state": "approved",
    }  # fmt: skip
    assert "a secret-looking comment" not in json.dumps(event)  # never the whole payload
    UUID(event["id"])


def test_a_closed_pull_request_is_sent_and_a_delivery_id_that_is_no_uuid_still_names_one_event():
    sent = Sent()
    body = json.dumps(closed()).encode()
    headers = delivery_headers("pull_request", "not-a-guid", SECRET, body)
    assert Relay(SECRET, sent).handle(headers, body).status == 202
    lowercase = {name.lower(): value for name, value in headers.items()}  # as some servers and proxies pass them
    assert Relay(SECRET, sent).handle(lowercase, body).status == 202
    assert [event["event"] for event in sent] == ["github.pull_request.closed"] * 2
    assert sent[0]["id"] == sent[1]["id"] and sent[0]["payload"]["review_state"] is None


def test_a_bad_or_missing_signature_is_refused_with_one_line_and_nothing_of_the_body(caplog: pytest.LogCaptureFixture):
    sent = Sent()
    relay = Relay(SECRET, sent)
    body = json.dumps(review()).encode()
    caplog.set_level(logging.INFO, logger="promo.relay")
    forged = deliver(relay, "pull_request_review", review(), secret=b"the attacker's secret")
    replayed = relay.handle(delivery_headers("pull_request_review", DELIVERY, SECRET, b"{}"), body)  # another body's
    unsigned = relay.handle({"X-GitHub-Event": "pull_request_review", "X-GitHub-Delivery": DELIVERY}, body)
    assert [(a.status, a.text) for a in (forged, replayed, unsigned)] == [
        (401, "bad X-Hub-Signature-256"), (401, "bad X-Hub-Signature-256"), (401, "missing X-Hub-Signature-256"),
    ]  # fmt: skip
    assert sent == []
    assert len(caplog.records) == 3 and all(record.levelname == "WARNING" for record in caplog.records)
    assert "secret-looking" not in caplog.text and BRANCH not in caplog.text


def test_events_promo_does_not_need_are_answered_2xx_and_dropped():
    sent = Sent()
    relay = Relay(SECRET, sent)
    answers = [
        deliver(relay, "ping", {"zen": "Keep it logically awesome.", "hook_id": 1}),
        deliver(relay, "pull_request_review", review("commented")),
        deliver(relay, "pull_request", {**closed(), "action": "synchronize"}),
        deliver(relay, "check_suite", {"action": "completed"}),
        deliver(relay, "push", {"ref": "refs/heads/main"}),
    ]
    assert all(200 <= answer.status < 300 for answer in answers) and sent == []
    assert deliver(relay, "pull_request", None, body=b"payload=%7B%7D").status == 400  # a form-encoded webhook


def test_a_prefect_api_that_does_not_take_the_event_makes_the_delivery_fail_so_it_can_be_redelivered():
    def down(event: dict[str, Any]) -> None:
        raise TransientError("the Prefect API at http://prefect:4200/api did not answer (ConnectError)", "try again")

    assert deliver(Relay(SECRET, down), "pull_request", closed()).status == 502


def test_the_secret_comes_from_a_file_or_the_environment_never_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("PROMO_GITHUB_WEBHOOK_SECRET", raising=False)
    secret_file = tmp_path / "secret"
    secret_file.write_text("s3cret\n")
    assert read_secret(secret_file) == b"s3cret"
    monkeypatch.setenv("PROMO_GITHUB_WEBHOOK_SECRET", "from-env")
    assert read_secret(None) == b"from-env"
    monkeypatch.setenv("PROMO_GITHUB_WEBHOOK_SECRET", " ")
    with pytest.raises(InputError, match="no GitHub webhook secret"):
        read_secret(None)
    with pytest.raises(InputError, match="cannot read the webhook secret file"):
        read_secret(tmp_path / "missing")


@contextmanager
def serving(relay: Relay) -> Iterator[str]:
    """``relay`` served over HTTP as `promo relay-github-webhooks` serves it, on a free port: its URL."""
    server = relay_server(relay, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def relay_url() -> Iterator[tuple[str, Sent]]:
    sent = Sent()
    with serving(Relay(SECRET, sent)) as url:
        yield url, sent


def test_the_relay_serves_deliveries_over_http(relay_url: tuple[str, Sent]):
    url, sent = relay_url
    body = json.dumps(review()).encode()
    good = httpx.post(url, content=body, headers=delivery_headers("pull_request_review", DELIVERY, SECRET, body))
    bad = httpx.post(url, content=body, headers=delivery_headers("pull_request_review", DELIVERY, b"wrong", body))
    assert (good.status_code, bad.status_code) == (202, 401)
    assert "secret-looking" not in bad.text and len(sent) == 1
    assert httpx.get(f"{url}healthz").status_code == 200
    huge = httpx.post(url, content=b"x" * (6 * 1024 * 1024), headers={"X-GitHub-Event": "push"})
    assert huge.status_code == 413


def test_the_command_refuses_to_start_without_a_secret_and_takes_none_on_its_command_line(tmp_path: Path):
    env = {key: value for key, value in os.environ.items() if key != "PROMO_GITHUB_WEBHOOK_SECRET"}
    env["PROMO_HOME"] = str(tmp_path)  # no local promo server to find
    promo = Path(sys.executable).parent / "promo"
    done = subprocess.run([str(promo), "relay-github-webhooks", "--port", "0"], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode != 0 and done.stdout == ""
    assert done.stderr.startswith("promo: error: no GitHub webhook secret: $PROMO_GITHUB_WEBHOOK_SECRET is empty")
    command = typer.main.get_command(app).commands["relay-github-webhooks"]  # type: ignore[attr-defined]
    assert {opt for param in command.params for opt in param.opts} == {"--secret-file", "--host", "--port"}


def test_a_refused_delivery_stays_one_line_whatever_its_headers_say(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="promo.relay")
    headers = {"X-GitHub-Event": "push\nINFO forged line", "X-GitHub-Delivery": "x" * 500, "X-Hub-Signature-256": "?"}
    assert Relay(SECRET, Sent()).handle(headers, b"{}").status == 401
    [record] = caplog.records
    assert "\n" not in record.getMessage() and len(record.getMessage()) < 200
