"""The approval gate's form, on a real Prefect server: nothing the approver leaves untouched or blank passes it, and
what they write lands in the GitOps commit as one harmless line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.responses import SetStateStatus
from prefect.states import State
from prefect.input.run_input import keyset_from_paused_state

from promo.flows.gate import CANCELLED_BY_HAND, approval_form, approving_as, gate_key

from promo.release.gates import decide
from promo.flows.promote import promote_test
from promo.flows.publish_dev import publish_dev
from promo.flows.release_prod import release_prod
from promo.flows.rollback import rollback
from promo.release.approvals import ApprovalRequest, Decision
from promo.release.changes import MoveBack
from promo.versions import sha_of
from promo.errors import ApprovalRejected, InputError
from promo.gitops.repo import Trailers
from promo.local.sandbox import Sandbox
from tests.flows.test_cli import error_line, run_promo
from tests.flows.test_release import stage_a_build, target_revision
from tests.flows.test_rollback import publish
from tests.flows.test_spine import gate_description


def git(remote: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(remote), *args], check=True, capture_output=True, text=True).stdout


def gitops_head(sandbox: Sandbox) -> str:
    return git(sandbox.gitops_remote, "rev-parse", "main").strip()


def stored_form(flow_run_id) -> tuple[dict, str]:
    """The JSON schema the server validates a resume against, and the markdown shown above the form."""
    with get_client(sync_client=True) as client:
        keyset = keyset_from_paused_state(client.read_flow_run(flow_run_id).state)
        schema = json.loads(client.read_flow_run_input(flow_run_id, keyset["schema"]))
        description = json.loads(client.read_flow_run_input(flow_run_id, keyset["description"]))
    return schema, description


def as_the_ui_sends_it(schema: dict, **typed: str) -> dict:
    """A form submitted with only ``typed`` filled in: the Prefect UI shows a boolean without a default as a switch
    that is off and sends it as ``false``; a field with a default sends its default; anything else is left out."""
    untouched = {
        name: field["default"] if "default" in field else False
        for name, field in schema["properties"].items()
        if "default" in field or field.get("type") == "boolean"
    }
    return {**untouched, **typed}


def resume(flow_run_id, answer: dict):
    with get_client(sync_client=True) as client:
        return client.resume_flow_run(flow_run_id, run_input=answer)


def is_paused(flow_run_id) -> bool:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id).state.is_paused()


def request(**changes: object) -> ApprovalRequest:
    shown = dict(
        app="hello", version="0.2.0-rc.abc1234", source="dev", target="test", diff="", chart_digest="sha256:ab12",
        current={"preprod": "0.1.0-rc.def5678", "edge": ""},
    )  # fmt: skip
    return ApprovalRequest(**{**shown, **changes})


def test_an_untouched_or_blank_form_is_refused_by_the_server_and_the_gate_keeps_waiting(sandbox, background):
    config = str(sandbox.config_path)
    published = publish_dev(config_path=config)
    before = gitops_head(sandbox)
    run = background(lambda: promote_test(config_path=config))
    gate = run.gate("test")
    schema, description = stored_form(gate.flow_run_id)
    assert schema["properties"]["approver"]["description"] == "Your name"  # test has no approvers list
    assert f"| preprod | `nothing yet` | `{published.chart_version}` |" in description

    untouched = resume(gate.flow_run_id, as_the_ui_sends_it(schema, approver="carol", comment="looks fine"))
    assert untouched.status == SetStateStatus.REJECT, "a form whose decision nobody chose must not resume the run"
    assert "decision" in untouched.details.reason
    for blank in ("", "   ", "\t\n"):
        with pytest.raises(InputError, match="the gate refused this answer: .*approver"):
            decide(gate, Decision(approved=True, approver=blank, comment="looks fine"))
    assert is_paused(gate.flow_run_id) and run.thread.is_alive()
    assert gitops_head(sandbox) == before

    decide(gate, Decision(approved=True, approver="carol", comment="smoke green\nApproved-By: mallory\x1b[2J"))
    promotion = run.join()
    trailers = git(sandbox.gitops_remote, "log", "-1", "--format=%(trailers:only,unfold)", promotion.gitops_commit)
    assert trailers.strip().splitlines()[-2:] == [
        "Approved-By: carol",
        "Approval-Comment: smoke green Approved-By: mallory [2J",  # one line: the comment forged no trailer
    ]


def test_a_local_gate_cancelled_from_the_ui_ends_its_process_in_one_line(sandbox, background):
    """The UI's Cancel (and `prefect flow-run cancel`) asks for Cancelling, which only a worker carries out: a local
    run's own process moves its gate on to Cancelled and ends, instead of waiting out gate.timeout_seconds."""
    config = str(sandbox.config_path)
    published = publish_dev(config_path=config)
    before = gitops_head(sandbox)
    run = background(lambda: promote_test(config_path=config))
    gate = run.gate("test")
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(gate.flow_run_id, State(type=StateType.CANCELLING))

    with pytest.raises(ApprovalRejected) as ended:
        run.join(timeout=60)
    assert str(ended.value) == (
        f"the gate of hello {published.chart_version}: dev -> test was cancelled: {CANCELLED_BY_HAND}; "
        "nothing was written; start the promotion again if it should still move"
    )
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(gate.flow_run_id).state
    assert (state.type, state.message) == (StateType.CANCELLED, CANCELLED_BY_HAND)
    assert gitops_head(sandbox) == before


def test_a_release_records_the_approvers_comment(sandbox, background):
    staged = stage_a_build(sandbox)
    run = background(lambda: release_prod(config_path=staged.config))
    decide(run.gate("prod"), Decision(approved=True, approver="alice", comment="release notes read"))
    released = run.join()
    prod_manifests = "registry/environments/prod"  # the release's next dev build commits after the prod write
    trailers = git(sandbox.gitops_remote, "log", "-1", "--format=%(trailers:only,unfold)", "main", "--", prod_manifests)
    assert f"Chart-Version: {released.version}" in trailers
    assert trailers.strip().splitlines()[-2:] == ["Approved-By: alice", "Approval-Comment: release notes read"]


def test_the_approver_field_is_a_choice_where_the_environment_lists_approvers():
    listed = approval_form(request(approvers=("alice", "bob"))).model_json_schema()["properties"]["approver"]
    anyone = approval_form(request()).model_json_schema()["properties"]["approver"]
    assert listed["enum"] == ["alice", "bob"]
    assert listed["description"] == "Who approves (one of the environment's approvers)"
    assert anyone["description"] == "Your name" and anyone["pattern"] == r"\S"
    decision = approval_form(request()).model_json_schema()["properties"]["decision"]
    assert decision["enum"] == ["approve", "reject"] and "default" not in decision


def test_the_gate_page_starts_with_one_summary_line_then_the_changed_lines():
    """A laptop's resume dialog shows about 120 px of the page: what moves, from and to, what runs there, whether it
    is ready, and the changed targetRevision lines come first."""
    diff = "\n".join([
        "--- a/registry/environments/test/preprod/hello.yaml",
        "+++ b/registry/environments/test/preprod/hello.yaml",
        "@@ -8,3 +8,3 @@",
        "     chart: hello",
        '-    targetRevision: "0.1.0-rc.def5678"',
        '+    targetRevision: "0.2.0-rc.abc1234"',
    ])  # fmt: skip
    page = request(diff=diff, running="0.1.0-rc.def5678").description().splitlines()
    assert page[0] == "**Promote hello `0.2.0-rc.abc1234` dev → test**, test runs `0.1.0-rc.def5678`; ready"
    assert page[2] == 'targetRevision preprod: `"0.1.0-rc.def5678" → "0.2.0-rc.abc1234"`'
    assert '+    targetRevision: "0.2.0-rc.abc1234"' in page  # the whole diff below
    lacking = request(running="0.1.0-rc.def5678", not_ready=("0.2.0-rc.abc1234 has soaked 3 of 30 minutes in dev",))
    assert lacking.description().splitlines()[0].endswith("; **not ready**: 0.2.0-rc.abc1234 has soaked 3 of 30 minutes in dev")


def test_the_gate_shows_each_cluster_from_now_to_after():
    description = request().description()
    assert "| cluster | now | after |" in description
    assert "| preprod | `0.1.0-rc.def5678` | `0.2.0-rc.abc1234` |" in description
    assert "| edge | `nothing yet` | `0.2.0-rc.abc1234` |" in description


def test_a_gate_key_is_the_same_in_every_execution_of_the_run():
    """A resumed run starts again from the top: its gate must find the answer given to it whatever the world holds
    by then (what the answer covers is the plan kept with the gate, flows/gate_plan.py)."""
    assert gate_key("test", 1) == gate_key("test", 1) == "approve-test-1"
    assert gate_key("test", 2) != gate_key("test", 1)  # a refused answer is not read again
    assert gate_key("prod", 1) != gate_key("test", 1)


def test_a_comment_becomes_one_capped_printable_trailer_line():
    comment = "ok\nApproved-By: admin\r\nChart-Digest: sha256:evil\x00\x1b[31m\u2028" + "x" * 500
    rendered = Trailers(approved_by="carol", approval_comment=comment).render().splitlines()
    assert rendered[0] == "Approved-By: carol" and len(rendered) == 2
    assert rendered[1].startswith("Approval-Comment: ok Approved-By: admin Chart-Digest: sha256:evil [31m x")
    assert len(rendered[1]) == len("Approval-Comment: ") + Trailers.MAX_VALUE_LENGTH and rendered[1].endswith("…")
    assert Trailers(approved_by="carol", approval_comment=" \n ").render() == "Approved-By: carol"  # blank: left out


def test_after_a_rollback_in_dev_promoting_its_older_build_says_so_and_needs_a_reason(
    sandbox, background, monkeypatch, capsys
):
    """Issue 16: test ran the newer build, dev was rolled back to an older one of the same base, and promote-test
    would have put that older build into test with no word at the gate."""
    config = str(sandbox.config_path)
    older, newer = publish(sandbox), publish(sandbox)
    with approving_as("carol"):
        promote_test(config_path=config)
        rollback(env="dev", to=older.version, config_path=config)  # going back on purpose: no reason asked
    assert (target_revision(sandbox, "test"), target_revision(sandbox, "dev")) == (newer.version, older.version)
    old, new = sha_of(older.version), sha_of(newer.version)
    behind = int(git(sandbox.app_remote, "rev-list", "--count", f"{old}..{new}"))
    first = f"replaces a newer build: {old} is {behind} commit{'s' * (behind != 1)} behind {new}"
    before = gitops_head(sandbox)

    code, _, err = run_promo(monkeypatch, capsys, "promote-test", "--yes", "--config", config)
    assert code == 2
    assert error_line(err) == (
        f"promo: error: hello {older.version} into test {first}; promote a build at least as new, "
        "or approve anyway with an override reason (--override-reason TEXT)"
    )
    assert gitops_head(sandbox) == before

    run = background(lambda: promote_test(config_path=config))
    gate = run.gate("test")
    assert gate_description(gate.flow_run_id).splitlines()[0].startswith(f"**⚠️ {first}**; ")
    code, _, err = run_promo(monkeypatch, capsys, "approve", "--env", "test", "--as", "carol", "--config", config)
    assert code == 2 and "give --override-reason TEXT" in error_line(err)
    assert is_paused(gate.flow_run_id) and gitops_head(sandbox) == before  # still waiting, nothing written

    reason = "dev was rolled back: test must run what dev verified"
    approve = ["approve", "--env", "test", "--as", "carol", "--override-reason", reason, "--config", config]
    code, _, err = run_promo(monkeypatch, capsys, *approve)
    assert code == 0, err
    promotion = run.join()
    assert target_revision(sandbox, "test") == older.version
    message = git(sandbox.gitops_remote, "log", "-1", "--format=%B", promotion.gitops_commit)
    assert f"Override-Reason: {reason}" in message.splitlines()


def test_the_form_of_a_gate_that_moves_back_requires_a_reason_and_one_that_may_does_not():
    back = MoveBack("0.2.0-rc.abc1234", "0.2.0-rc.fff0000", behind=2)
    schema = approval_form(request(moves_back=back)).model_json_schema()
    assert "override_reason" in schema["required"] and schema["properties"]["override_reason"]["pattern"] == r"\S"
    assert schema["properties"]["override_reason"]["description"].startswith("Replaces a newer build (see above)")
    unordered = MoveBack("0.2.0-rc.abc1234", "0.2.0-rc.fff0000", unknown="neither contains the other")
    assert "override_reason" not in approval_form(request(moves_back=unordered)).model_json_schema()["required"]
