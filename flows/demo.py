"""`promo demo`: a sandbox, a real build moved dev -> test -> stage -> prod through real gates: the form into test,
approved by the demo user, and a pull request into stage and into prod on the sandbox's GitHub stand-in, approved by
alice's review, and the next dev build that the release starts. Then a build that comes up Degraded in dev: its failed
verification, the rollback of dev through its gate, and dev's history. Every step prints the verdict of the version it
deployed. With the local Prefect server and its worker up (`promo server start --with-worker`, as `make demo` does),
it ends by leaving the next promotion into test waiting at its gate for a person."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.states import Cancelled

from promo.deployments.deploy import setup_all
from promo.flows.background import GatedRun
from promo.flows.gate import prefect_api
from promo.release.gates import WaitingGate, decide, waiting_gates
from promo.flows.promote import FLOWS
from promo.flows.publish_dev import publish_dev
from promo.flows.release_prod import release_prod
from promo.flows.rollback import rollback
from promo.gitops.app_repo import read_chart_yaml
from promo.release.approvals import Decision
from promo.clients import app_mirror, gitops_pull_requests
from promo.forges.github import GivenToken
from promo.local.sandbox_github import TOKENS_FILE
from promo.release.pull_gate import review_gate, waiting_pull_requests
from promo.config import PromoConfig, load_config
from promo.errors import ToolError, VerificationFailed
from promo.gitops.history import TABLE_HEADERS, table_row
from promo.reports.history import app_history
from promo.local.sandbox import Sandbox, create_sandbox, degrade_version
from promo.local.prefect_server import ProcessWorker, running_server, running_worker
from promo.reports.status import environment_status
from promo.cli.table import print_table
from promo.versions import rc_version
from promo.tasks.verify import verify_environment

Result = TypeVar("Result")
DEMO_APPROVER = "demo"
REVIEWER = "alice"  # approves the pull requests into stage and prod (promo acts as demo, who opens them)
GATE_APPEARS_WITHIN_SECONDS = 120
# Under a deployment the worker polls, starts a process (importing Prefect) and runs the flow up to its gate:
# seconds on an idle machine, minutes on a loaded one.
DEPLOYED_GATE_WITHIN_SECONDS = 300


def run_demo(directory: Path) -> None:
    """Stage and prod are written through pull requests on the GitHub stand-in, which promo opens as demo and
    ``REVIEWER`` approves with a review (``through_review``); test through the Prefect form (``through_gate``)."""
    sandbox = create_sandbox(directory, pull_requests=True)
    config_path = str(sandbox.config_path)
    config = load_config(config_path)
    print(f"sandbox: {sandbox.directory} (registry {sandbox.registry_host})")
    os.environ["GITHUB_TOKEN"] = github_token(sandbox, "demo")  # promo acts as demo on the stand-in
    print(f"stand-in for GitHub: {sandbox.github_url}; promo acts as demo, {REVIEWER} reviews")
    cancel_earlier_demo_gates(config.app)
    print(publish_dev(config_path=config_path).summary())
    print_verdict(config, "dev")
    for target in ("test", "stage"):
        print(gated(sandbox, config, target, lambda flow=FLOWS[target]: flow(config_path=config_path)).summary())
        print_verdict(config, target)
    print(gated(sandbox, config, "prod", lambda: release_prod(config_path=config_path)).summary())
    print_verdict(config, "prod")
    print_verdict(config, "dev")  # the next build the release started, once it is there
    rows = environment_status(config)
    print_table(
        ["environment", "version", "image tag", "chart digest"],
        [[r.environment, r.version or "-", r.image_tag or "-", r.chart_digest or "-"] for r in rows],
    )
    roll_back_a_degraded_build(sandbox, config)
    leave_a_gate_waiting(config_path, config)


def roll_back_a_degraded_build(sandbox: Sandbox, config: PromoConfig) -> None:
    """A build that comes up Degraded in dev fails its verification; dev goes back to its last verified version."""
    config_path = str(sandbox.config_path)
    mirror = app_mirror(config)
    commit = mirror.commit_empty(config.app_repo.branch, "promo demo: a build that comes up Degraded")
    degraded = rc_version(str(read_chart_yaml(mirror, commit, config.chart.path)["version"]), commit)
    degrade_version(sandbox.directory, degraded)  # before it is published: it is Degraded from its first look
    print(f"\n{degraded} will come up Degraded in the sandbox; publishing it to dev")
    try:
        print(publish_dev(sha=commit, config_path=config_path).summary())
    except VerificationFailed as failed:  # a publish that verifies stops here, with the one line
        print(f"promo: error: {failed}")
    print_verdict(config, "dev")
    print(through_gate("dev", lambda: rollback(env="dev", config_path=config_path)).summary())
    print_verdict(config, "dev")
    print("\nhistory of dev (promo history dev):")
    print_table(TABLE_HEADERS, [table_row(change) for change in app_history(config, "dev")])


def cancel_earlier_demo_gates(app: str) -> None:
    """A promotion an earlier demo left waiting on the local server would be taken for this demo's gate: it is
    cancelled (superseded), never decided, since only a person decides a gate."""
    gates = waiting_gates(app=app, api=prefect_api())
    with get_client(sync_client=True) as client:
        for gate in gates:
            client.set_flow_run_state(gate.flow_run_id, Cancelled(message="superseded by a new promo demo"), force=True)
    if gates:
        print(f"cancelled {len(gates)} promotion(s) of {app} an earlier demo left waiting")


def leave_a_gate_waiting(config_path: str, config: PromoConfig) -> None:
    """The next promotion into test, started through its deployment on the local server and left at its gate: it
    suspends (no process waits with it) until a person decides, in the Prefect UI or with `promo approve`."""
    server, worker = running_server(), running_worker()
    if server is None or worker is None or os.environ.get("PREFECT_API_URL") != server.api_url:
        print("\nto leave a promotion waiting in the Prefect UI: `promo server start --with-worker`, then demo again")
        return
    setup_all(config_path, worker.pool)  # what `promo setup` does: pool, config, limits, secrets, deployments
    deployment = f"promote-test/{config.app}"
    print(f"\nregistered the deployments on {server.url} (promo setup); starting {deployment} on the worker")
    flow_run = run_deployment(deployment, timeout=0)
    gate = deployed_gate(flow_run.id, worker)
    print(f"waiting at its gate for you: {gate.app} {gate.version} -> test")
    print(f"  approve it in the Prefect UI: {gate.url} (Resume, decision: approve)")
    print(f"  or here: promo approve --env test --config {config_path}")


def deployed_gate(flow_run_id: UUID, worker: ProcessWorker) -> WaitingGate:
    """Wait, bounded, until the deployed run is suspended at its gate; a run that ends first is an error."""
    deadline = time.monotonic() + DEPLOYED_GATE_WITHIN_SECONDS
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            state = client.read_flow_run(flow_run_id).state
            if state is not None and state.is_final():
                raise ToolError(f"flow run {flow_run_id} ended {state.name} before its gate", f"read {worker.log_path}")
            gates = [gate for gate in waiting_gates(env="test") if gate.flow_run_id == flow_run_id]
            if gates:
                return gates[0]
            time.sleep(0.5)
    raise ToolError(
        f"flow run {flow_run_id} did not reach its gate within {DEPLOYED_GATE_WITHIN_SECONDS} s",
        f"read {worker.log_path}; `promo pending` shows it once it waits",
    )


def print_verdict(config: PromoConfig, env: str) -> None:
    """The verdict on the newest change in ``env``: the one recorded already, else it is verified now."""
    newest = app_history(config, env)[0]
    # The task's body: the demo runs it outside any flow run, where a task run would only warn about its logs.
    verdict = verify_environment.fn(config, env, newest.version or "", newest.commit)
    print(f"  {verdict.summary() if verdict else f'{env} is not verified (no verify: in promo.yaml)'}")


def gated(sandbox: Sandbox, config: PromoConfig, target: str, start: Callable[[], Result]) -> Result:
    """Through the gate into ``target``: a review of its pull request (approval: pull-request), else the form."""
    if config.environment(target).gate_kind == "pull-request":
        return through_review(sandbox, config, target, start)
    return through_gate(target, start)


def through_review(sandbox: Sandbox, config: PromoConfig, target: str, start: Callable[[], Result]) -> Result:
    """Start a flow writing through a pull request, wait until it is open, and approve it with a review by
    ``REVIEWER`` (their token), the way `promo approve --github-token` does."""
    run = GatedRun(start)
    pulls = gitops_pull_requests(config, GivenToken(github_token(sandbox, REVIEWER)))
    deadline = time.monotonic() + GATE_APPEARS_WITHIN_SECONDS
    while not (waiting := waiting_pull_requests(pulls, config.app, [target], config.gitops.branch)):
        if time.monotonic() > deadline or not run.thread.is_alive():
            run.join(0)  # raises what the flow raised
            raise ToolError(f"no pull request into {target} opened within {GATE_APPEARS_WITHIN_SECONDS} s",
                            "read the flow run's logs")  # fmt: skip
        time.sleep(0.5)
    login, review = review_gate(pulls, waiting[0], approve=True, comment="approved in a review by promo demo")
    print(f"pull request open: {waiting[0].pull_request['html_url']}; approved by {login} (GitHub review {review.id})")
    result = run.join()
    landed = app_history(config, target)[0]  # the merge commit, with promo's trailers and the review's approver
    print(f"  merged as {landed.commit[:12]}, Approved-By: {landed.approver}")
    return result


def github_token(sandbox: Sandbox, login: str) -> str:
    return str(json.loads((sandbox.directory / TOKENS_FILE).read_text())[login])


def through_gate(target: str, start: Callable[[], Result]) -> Result:
    """Start a gated flow, wait until its gate into ``target`` is open, approve it the way `promo approve` does."""
    run = GatedRun(start)
    gate = run.gate(target, timeout=GATE_APPEARS_WITHIN_SECONDS)
    print(f"gate open: {gate.app} {gate.version} -> {target}; approving as {DEMO_APPROVER}")
    decide(gate, Decision(approved=True, approver=DEMO_APPROVER, comment="approved by promo demo"), api=run.api)
    return run.join()
