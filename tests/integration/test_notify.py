"""Somebody is told when a gate waits, and when a promo run fails: `promo setup` points Prefect automations at the
notification block promo.yaml names. On a real server, a real worker and a webhook block that posts to a small HTTP
receiver here; and, without any server, the definitions themselves rendered by Prefect's own template code."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.deployments import run_deployment
from prefect.server.events.jinja_filters import all_filters
from prefect.server.schemas.core import Flow, FlowRun
from prefect.server.schemas.states import State, StateType
from prefect.server.utilities.user_templates import (
    register_user_template_filters,
    render_user_template_sync,
    validate_user_template,
)
from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

from promo.deployments.deploy import FLOWS, setup_all
from promo.deployments.notify import (
    automation_names,
    ensure_notifications,
    gate_waiting_name,
    notification_automations,
)
from promo.release.gates import NOT_APPLIED_TAG, decide, waiting_gates
from promo.release.approvals import Decision
from promo.config import NotifySettings, load_config
from promo.errors import InputError
from promo.local.sandbox import create_sandbox, stop_sandbox
from tests.integration.conftest import PrefectServer, stop, tail, wait_until
from tests.integration.test_gate_parameters import forget

RUN_SECONDS = 90  # a deadline, not a cost: on an idle machine a run reaches its gate in 3-6 s
NOTICE_SECONDS = 90  # event -> trigger -> action -> webhook: a few seconds on an idle machine
BLOCK = "promo-test-notify"
FLOW_NAMES = [spec.name for spec in FLOWS]


# --- the definitions, without a server -------------------------------------------------------------------------------


def render(template: str, flow_run: FlowRun, flow_name: str) -> str:
    """What the server sends: Prefect's own sandboxed renderer, with the filters its automations register."""
    register_user_template_filters(all_filters)
    validate_user_template(template)  # the server refuses templates with too many loops, as it would at create
    return render_user_template_sync(template, {"flow_run": flow_run, "flow": Flow(name=flow_name)})


def a_run(tags: list[str], state: str, message: str = "") -> FlowRun:
    state_type = StateType.PAUSED if state in ("Paused", "Suspended") else StateType.FAILED
    run_state = State(type=state_type, name=state, message=message)
    return FlowRun(id=uuid4(), name="brave-otter", flow_id=uuid4(), tags=tags, state=run_state)


CONFIG = """\
app: hello
app_repo: {url: remotes/hello.git}
gitops: {url: "file:///srv/gitops.git"}
chart: {path: charts/hello, repository: 127.0.0.1:5000/charts}
image: {repository: 127.0.0.1:5000/hello}
environments:
  - {name: dev, clusters: [preprod]}
  - {name: test, clusters: [preprod]}
  - {name: stage, clusters: [preprod], approvers: [carol, 'O''Brien "ob" {{ x }} %}']}
  - {name: prod, clusters: [prod], approvers: [alice]}
notify: {block: promo-approvals}
"""


@pytest.fixture()
def config(tmp_path: Path):
    path = tmp_path / "promo.yaml"
    path.write_text(CONFIG)
    return load_config(path)


def test_the_automations_watch_promo_runs_of_this_app_only(config):
    block_id = uuid4()
    waiting, failed = notification_automations(config, block_id, FLOW_NAMES, ui_url="http://prefect.example:4200")
    assert (waiting.name, failed.name) == automation_names("hello")
    assert automation_names("hello") == ("promo-hello-gate-waiting", "promo-hello-run-failed")

    assert waiting.trigger.expect == {"prefect.flow-run.Paused", "prefect.flow-run.Suspended"}
    assert waiting.trigger.match.model_dump() == {"prefect.resource.id": "prefect.flow-run.*"}
    assert failed.trigger.expect == {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"}
    for automation in (waiting, failed):
        # runs of promo's flows tagged with the app from their start (a deployment's tags), never by the gate's tags:
        # the server's events carry a run's tags as they were up to 5 minutes before
        assert [spec.model_dump() for spec in automation.trigger.match_related] == [
            {"prefect.resource.role": "tag", "prefect.resource.id": "prefect.tag.app:hello"},
            {"prefect.resource.role": "flow", "prefect.resource.name": sorted(FLOW_NAMES)},
        ]
        assert automation.trigger.posture == "Reactive" and automation.trigger.threshold == 1
        assert automation.trigger.for_each == {"prefect.resource.id"}  # one message per run, each time it happens
        sends = [(action.type, action.block_document_id) for action in automation.actions]
        assert sends == [("send-notification", block_id)]
        assert automation.tags == ["promo", "app:hello"]


def test_the_gate_notice_names_app_version_route_approvers_and_link(config):
    waiting, _ = notification_automations(config, uuid4(), FLOW_NAMES, ui_url="http://prefect.example:4200/")
    action = waiting.actions[0]
    run = a_run(["promo", "app:hello", "promo-gate", "env:stage", "version:0.2.0-rc.abc1234"], "Suspended")

    with temporary_settings(updates={PREFECT_UI_URL: None, PREFECT_API_URL: None}):  # a server that knows no UI URL
        subject, body = (render(template, run, "promote-stage") for template in (action.subject, action.body))
    assert subject == "promo: hello 0.2.0-rc.abc1234 waits for approval into stage"
    assert "hello 0.2.0-rc.abc1234 waits at its gate: test -> stage." in body
    assert 'Who may approve: carol or O\'Brien "ob" {{ x }} %}' in body  # names are data, never template code
    assert "Flow run: promote-stage/brave-otter" in body
    assert f"Decide in the UI: http://prefect.example:4200/runs/flow-run/{run.id}\n" in body  # setup's URL
    assert "promo approve --env stage" in body

    with temporary_settings(updates={PREFECT_UI_URL: "https://prefect.internal"}):  # the server's own UI URL wins
        body = render(action.body, run, "promote-stage")
    assert f"Decide in the UI: https://prefect.internal/runs/flow-run/{run.id}\n" in body

    test_run = a_run(["app:hello", "promo-gate", "env:test", "version:0.2.0-rc.abc1234"], "Paused")
    assert "Who may approve: anyone" in render(action.body, test_run, "promote-test")  # test lists no approvers
    rollback = a_run(["app:hello", "promo-gate", "env:test", "version:0.1.0-rc.0000000"], "Paused")
    assert "waits at its gate: rollback of test." in render(action.body, rollback, "rollback")


def test_the_failure_notice_carries_the_one_line_reason(config):
    _, failed = notification_automations(config, uuid4(), FLOW_NAMES, ui_url="http://prefect.example:4200")
    action = failed.actions[0]
    reason = "promote-test of hello 0.2.0-rc.abc1234 was rejected by carol: not today"
    rejected = a_run(
        ["app:hello", "promo-gate", "env:test", "version:0.2.0-rc.abc1234"], "Failed",
        f"Flow run encountered an exception: ApprovalRejected: {reason}",
    )  # fmt: skip
    assert render(action.subject, rejected, "promote-test") == (
        "promo: hello promote-test failed (0.2.0-rc.abc1234, dev -> test)"
    )
    with temporary_settings(updates={PREFECT_UI_URL: None, PREFECT_API_URL: None}):  # a server that knows no UI URL
        body = render(action.body, rejected, "promote-test")
    assert f"Why: ApprovalRejected: {reason}\n" in body
    assert f"Flow run: http://prefect.example:4200/runs/flow-run/{rejected.id}" in body

    publish = a_run(["promo", "app:hello"], "Failed", "Flow run encountered an exception: ToolError: buildah failed")
    assert render(action.subject, publish, "publish-dev") == "promo: hello publish-dev failed"  # no gate, no version
    assert "publish-dev/brave-otter of hello ended Failed.\nWhy: ToolError: buildah failed" in render(
        action.body, publish, "publish-dev"
    )


def test_the_failure_notice_says_when_an_approval_was_not_applied(config):
    _, failed = notification_automations(config, uuid4(), FLOW_NAMES, ui_url="http://prefect.example:4200")
    reason = "test of hello moved from 0.1.0-rc.def5678 to 0.0.9 since the gate opened; run promote-test again"
    tags = ["app:hello", "promo-gate", "env:test", "version:0.2.0-rc.abc1234"]
    message = f"Flow run encountered an exception: ConflictError: {reason}"
    not_applied = render(failed.actions[0].body, a_run([*tags, NOT_APPLIED_TAG], "Failed", message), "promote-test")
    assert f"Why: ConflictError: {reason}\n" in not_applied
    assert "\nThe approval was not applied: test moved after its gate opened, so nothing was written.\nFlow run: " in (
        not_applied
    )
    other = render(failed.actions[0].body, a_run(tags, "Failed", message), "promote-test")
    assert "not applied" not in other and f"Why: ConflictError: {reason}\nFlow run: " in other


# --- on a real server ------------------------------------------------------------------------------------------------


@dataclass
class Receiver:
    """A webhook endpoint on 127.0.0.1 that keeps every JSON body posted to it."""

    url: str
    received: list[dict] = field(default_factory=list)

    def find(self, *needles: str) -> dict | None:
        for notice in list(self.received):
            text = f"{notice.get('subject')}\n{notice.get('body')}"
            if all(needle in text for needle in needles):
                return notice
        return None


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    found: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
            found.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Receiver(f"http://127.0.0.1:{server.server_address[1]}/notify", found)
    finally:
        server.shutdown()
        thread.join(10)


@pytest.mark.integration
@pytest.mark.slow
def test_a_waiting_gate_and_a_rejection_are_announced(prefect_server: PrefectServer, start_worker, receiver, tmp_path):
    sandbox = create_sandbox(tmp_path / "world")
    config = sandbox.config_path
    with temporary_settings(updates={PREFECT_API_URL: prefect_server.url}), get_client(sync_client=True) as client:
        block_id = CustomWebhookNotificationBlock(
            name="promo test", url=receiver.url, json_data={"subject": "{{subject}}", "body": "{{body}}"}
        ).save(BLOCK, overwrite=True)
        registered, worker, started = [], None, []
        try:
            config.write_text(config.read_text() + f"notify:\n  block: {BLOCK}\n")
            registered = setup_all(config)
            lines = [outcome.line() for outcome in registered if outcome.kind == "automation"]
            assert lines == [
                f"created  automation promo-hello-gate-waiting (notifies {BLOCK})",
                f"created  automation promo-hello-run-failed (notifies {BLOCK})",
            ]
            again = [outcome.line() for outcome in setup_all(config) if outcome.kind == "automation"]
            assert again == [f"exists   automation {name}" for name in automation_names("hello")]
            assert [len(client.read_automations_by_name(name)) for name in automation_names("hello")] == [1, 1]
            # switched off in the UI: setup leaves it off
            waiting = client.read_automations_by_name(gate_waiting_name("hello"))[0]
            client.pause_automation(waiting.id)
            kept = [outcome.line() for outcome in setup_all(config) if outcome.kind == "automation"]
            assert kept[0] == "exists   automation promo-hello-gate-waiting (switched off)"
            assert not client.read_automation(waiting.id).enabled
            client.resume_automation(waiting.id)
            # a block name that does not exist is one line naming the fix
            missing = load_config(config).model_copy(update={"notify": NotifySettings(block="nope")})
            with pytest.raises(InputError, match="no notification block of that name.*create it"):
                ensure_notifications(missing, FLOW_NAMES)

            worker = start_worker("promo")
            build = run_deployment("publish-dev/hello", timeout=RUN_SECONDS, poll_interval=0.5)
            started.append(build.id)
            assert build.state.is_completed(), tail(worker.log)

            promotion = run_deployment("promote-test/hello", timeout=0)
            started.append(promotion.id)
            wait_until(
                lambda: client.read_flow_run(promotion.id).state.name == "Suspended", RUN_SECONDS, "the gate",
                alive=worker.process, log=worker.log,
            )  # fmt: skip
            gate = waiting_gates(app="hello", env="test")[0]
            link = f"{prefect_server.url.removesuffix('/api')}/runs/flow-run/{promotion.id}"
            notice = wait_until(
                lambda: receiver.find("waits for approval", gate.version, link), NOTICE_SECONDS,
                f"the gate notice at the receiver (got {receiver.received})", log=prefect_server.log,
            )  # fmt: skip
            assert notice["subject"] == f"promo: hello {gate.version} waits for approval into test"
            assert "dev -> test" in notice["body"] and "Who may approve: anyone" in notice["body"]

            decide(gate, Decision(approved=False, approver="carol", comment="not today"))
            failed = wait_until(
                lambda: (run := client.read_flow_run(promotion.id)).state.is_final() and run, RUN_SECONDS,
                "the rejected run to end", alive=worker.process, log=worker.log,
            )  # fmt: skip
            assert failed.state.is_failed(), failed.state
            notice = wait_until(
                lambda: receiver.find("promote-test failed", gate.version, link), NOTICE_SECONDS,
                f"the failure notice at the receiver (got {receiver.received})", log=prefect_server.log,
            )  # fmt: skip
            assert "ApprovalRejected" in notice["body"] and "carol" in notice["body"], notice

            # without notify, setup takes its automations away again
            config.write_text(config.read_text().replace(f"notify:\n  block: {BLOCK}\n", ""))
            removed = [outcome.line() for outcome in setup_all(config) if outcome.kind == "automation"]
            assert removed == [
                "removed  automation promo-hello-gate-waiting (promo.yaml has no notify)",
                "removed  automation promo-hello-run-failed (promo.yaml has no notify)",
            ]
            assert [client.read_automations_by_name(name) for name in automation_names("hello")] == [[], []]
        finally:
            if worker is not None:
                stop(worker.process)  # before forget: a running worker would create its pool again
            # the runs' artifacts outlive the runs forget deletes; test_server.py reads the gate's decision artifact
            their_runs = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=started))
            for artifact in client.read_artifacts(artifact_filter=their_runs) if started else []:
                client.delete_artifact(artifact.id)
            for name in automation_names("hello"):
                for automation in client.read_automations_by_name(name):
                    client.delete_automation(automation.id)
            forget(client, registered)
            client.delete_block_document(UUID(str(block_id)))
            stop_sandbox(sandbox.directory)
