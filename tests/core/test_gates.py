"""Finding and answering gates over Prefect's REST API (promo.release.gates), against a stand-in HTTP server.

The real server's side (the form's schema, resuming the run) is exercised by tests/flows and tests/integration; here
the answers Prefect gives that the client must read correctly: a refusal inside HTTP 200, a run that is no gate.
"""

from __future__ import annotations

import json
import sys
import uuid
from datetime import datetime, timezone

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from promo.errors import ApprovalRejected, InputError, NotFound
from promo.release.approvals import Decision
from promo.release.gates import PrefectApi, WaitingGate, decide, waiting_gates

RUN_ID = uuid.UUID(int=42)
FLOW_ID = str(uuid.UUID(int=7))


def paused_run(tags=("promo-gate", "app:hello", "env:test", "version:1.0.0"), key="approve-test-0123-1", keyset=True):
    details = {"pause_key": key, "run_input_keyset": {"schema": "s", "description": "d"} if keyset else None}
    state = {"type": "PAUSED", "name": "Suspended", "timestamp": "2026-11-30T10:00:00+00:00", "state_details": details}
    return {"id": str(RUN_ID), "name": "brisk-otter", "flow_id": FLOW_ID, "tags": list(tags), "state": state}


@pytest.fixture()
def api(httpserver: HTTPServer) -> PrefectApi:
    return PrefectApi(url=httpserver.url_for("/api"), ui_url="http://ui.example", headers={})


def gate(env: str = "test") -> WaitingGate:
    return WaitingGate(RUN_ID, "brisk-otter", "promote-test", "hello", env, "1.0.0", datetime.now(timezone.utc), "")


def test_waiting_gates_asks_for_paused_runs_with_the_gate_tags_and_names_their_flows(httpserver, api):
    httpserver.expect_request("/api/flow_runs/filter", method="POST").respond_with_json([paused_run()])
    flows = [{"id": FLOW_ID, "name": "promote-test"}]
    httpserver.expect_request("/api/flows/filter", method="POST").respond_with_json(flows)
    [found] = waiting_gates(app="hello", env="test", api=api)
    query = json.loads(httpserver.log[0][0].data)
    assert query["flow_runs"]["tags"]["all_"] == ["promo-gate", "app:hello", "env:test"]
    assert query["flow_runs"]["state"]["type"]["any_"] == ["PAUSED"]
    assert (found.flow_run_id, found.flow_name, found.app, found.env, found.version) == (
        RUN_ID, "promote-test", "hello", "test", "1.0.0"
    )
    assert found.url == f"http://ui.example/runs/flow-run/{RUN_ID}"
    assert found.waiting_since == datetime(2026, 11, 30, 10, tzinfo=timezone.utc)


def test_an_approval_is_sent_as_the_forms_fields(httpserver, api):
    httpserver.expect_request(f"/api/flow_runs/{RUN_ID}", method="GET").respond_with_json(paused_run())
    httpserver.expect_request(f"/api/flow_runs/{RUN_ID}/resume", method="POST").respond_with_json({"status": "ACCEPT"})
    decide(gate(), Decision(approved=False, approver="carol", comment="red", override_reason=""), api=api)
    sent = json.loads(httpserver.log[-1][0].data)
    assert sent == {"run_input": {"decision": "reject", "approver": "carol", "comment": "red", "override_reason": ""}}


def test_the_servers_refusal_inside_http_200_is_an_error(httpserver, api):
    refused = {"status": "REJECT", "details": {"reason": "Reason: 'mallory' is not one of ['alice']"}, "state": None}
    httpserver.expect_request(f"/api/flow_runs/{RUN_ID}", method="GET").respond_with_json(paused_run())
    httpserver.expect_request(f"/api/flow_runs/{RUN_ID}/resume", method="POST").respond_with_json(refused)
    with pytest.raises(InputError, match=r"the gate refused this answer: 'mallory' is not one of \['alice'\]"):
        decide(gate(), Decision(approved=True, approver="mallory"), api=api)


def test_a_gate_whose_form_is_not_saved_yet_is_answered_once_it_is(httpserver, api):
    """Prefect sets a run Paused before it saves the form: a gate listed in that moment refuses the answer with
    "Run input schema not found". That is the gate still opening, not a refusal of the answer."""
    answers = iter([{"status": "REJECT", "details": {"reason": "Run input schema not found."}}] * 2
                   + [{"status": "ACCEPT"}])  # fmt: skip
    httpserver.expect_request(f"/api/flow_runs/{RUN_ID}", method="GET").respond_with_json(paused_run())
    httpserver.expect_request(f"/api/flow_runs/{RUN_ID}/resume", method="POST").respond_with_handler(
        lambda _request: Response(json.dumps(next(answers)))
    )
    decide(gate(), Decision(approved=False, approver="alice", comment="red"), api=api)
    resumes = [request for request, _ in httpserver.log if request.path.endswith("/resume")]
    assert len(resumes) == 3


def test_only_a_refused_override_reason_is_answered_with_the_hint_to_give_one(httpserver, api):
    """The server names the field it refused; the hint fits that field, never both at once."""
    reasons = iter([
        "Reason: Validation failed for field 'override_reason'. Failure reason: '' does not match '\\\\S'",
        "Reason: Validation failed for field 'approver'. Failure reason: '' does not match '\\\\S'",
    ])  # fmt: skip
    httpserver.expect_request(f"/api/flow_runs/{RUN_ID}", method="GET").respond_with_json(paused_run())
    httpserver.expect_request(f"/api/flow_runs/{RUN_ID}/resume", method="POST").respond_with_handler(
        lambda _request: Response(json.dumps({"status": "REJECT", "details": {"reason": next(reasons)}}))
    )
    with pytest.raises(InputError) as needs_reason:
        decide(gate(), Decision(approved=True, approver="carol"), api=api)
    assert str(needs_reason.value) == (
        "the gate refused this answer: hello 1.0.0 into test needs an override reason (it is not ready, or replaces "
        "a newer build: its page says which); give --override-reason TEXT and try again"
    )
    with pytest.raises(InputError) as no_name:
        decide(gate(), Decision(approved=True, approver=" "), api=api)
    assert "for field 'approver'" in str(no_name.value) and "override" not in str(no_name.value)


def test_a_timed_out_gate_is_a_rejection(httpserver, api):
    timed_out = {"status": "REJECT", "details": {"reason": "x"}, "state": {"type": "FAILED"}}
    httpserver.expect_request(f"/api/flow_runs/{RUN_ID}", method="GET").respond_with_json(paused_run())
    httpserver.expect_request(f"/api/flow_runs/{RUN_ID}/resume", method="POST").respond_with_json(timed_out)
    with pytest.raises(ApprovalRejected, match="timed out"):
        decide(gate(), Decision(approved=True, approver="alice"), api=api)


@pytest.mark.parametrize(
    "run, error, message",
    [
        ({**paused_run(), "state": {"type": "RUNNING"}}, NotFound, "no longer waiting at a gate"),
        (paused_run(tags=("app:hello", "env:test")), InputError, "is not waiting at a promo gate"),
        (paused_run(keyset=False), InputError, "is not waiting at a promo gate"),
        (paused_run(key="approve-prod-0123-1"), InputError, "waits at a gate other than the one into test"),
    ],
    ids=["not paused", "no gate tag", "paused without a form", "the key of another environment"],
)
def test_a_run_that_is_not_this_gate_is_never_resumed(httpserver, api, run, error, message):
    httpserver.expect_request(f"/api/flow_runs/{RUN_ID}", method="GET").respond_with_json(run)
    with pytest.raises(error, match=message):
        decide(gate(), Decision(approved=True, approver="alice"), api=api)
    assert [request.path for request, _ in httpserver.log] == [f"/api/flow_runs/{RUN_ID}"]  # no resume sent


def test_a_busy_server_is_asked_again(httpserver, api):
    answers = iter([Response("database is locked", status=503), Response("[]", content_type="application/json")])
    httpserver.expect_request("/api/flow_runs/filter", method="POST").respond_with_handler(lambda _: next(answers))
    assert waiting_gates(api=api) == []
    assert len(httpserver.log) == 2


def test_the_api_comes_from_prefect_api_url_and_the_ui_link_from_it(monkeypatch, tmp_path):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api/")
    monkeypatch.delenv("PREFECT_UI_URL", raising=False)
    monkeypatch.delitem(sys.modules, "prefect.settings", raising=False)
    api = PrefectApi.from_environment()
    assert (api.url, api.ui_url, dict(api.headers)) == ("http://127.0.0.1:4200/api", "http://127.0.0.1:4200", {})


def test_the_active_prefect_profile_is_read_when_the_environment_names_no_server(monkeypatch, tmp_path):
    (tmp_path / "profiles.toml").write_text(
        'active = "team"\n[profiles.team]\nPREFECT_API_URL = "https://prefect.example/api"\nPREFECT_API_KEY = "k"\n'
    )
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    for name in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE", "PREFECT_UI_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delitem(sys.modules, "prefect.settings", raising=False)
    api = PrefectApi.from_environment()
    assert (api.url, dict(api.headers)) == ("https://prefect.example/api", {"Authorization": "Bearer k"})

