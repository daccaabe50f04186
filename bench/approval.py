"""Bench 1, approval to commit: from decide() on a paused promote-test gate to the GitOps commit on the remote.

Each round stages a new chart version in dev, starts promote-test in a thread (on a temporary Prefect server, as the
tests do), waits until its gate is Paused, waits a random fraction of the gate's poll interval (an approver clicks at
any point of the polling cycle), then calls ``promo.release.gates.decide`` and polls the bare remote's ref until it moves.
The gate's poll interval is the sandbox promo.yaml's ``gate.poll_interval_seconds``; the README's default (2 s) runs
too, to show how the interval bounds the latency. The raw floor (bench/floors/raw_push.sh: fetch, sed, commit, push
in a cached clone of the same remote) runs interleaved, and once more under hyperfine.

Then the same under a deployment, as a team runs promo: `promo setup`'s registrations (``setup_all``) on the same
server, a process worker (``prefect worker start``) started first with promo's defaults (the worker settings
``promo.local.prefect_server.WORKER_SETTINGS`` and the pool's job command ``python -m prefect.engine``), then with
Prefect's job template (no command: a workspace supervisor starts the engine), then with Prefect's defaults for both;
promote-test started through its deployment.
The gate suspends (the run's process exits); the decision puts the run back in the queue, a worker picks it up and
starts a new process that runs the flow again from the top. Each round is split, from the API's state history and
task runs, into the wait for the worker, the process start (imports included), the work repeated before the gate,
and the write.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from common import RAW_PUSH, Report, hyperfine, progress, raw_clone, raw_push, stop_group, wait_for_new_head
from common import main as cli
from world import (
    TEST_MANIFEST,
    prefect_server,
    run_times,
    sandbox_world,
    settle_then_random_phase,
    timed_helpers,
)

README_DEFAULT_POLL = 2.0
PREFECT_DEFAULT_WORKER = {"PREFECT_WORKER_QUERY_SECONDS": "10"}  # Prefect's own default, spelled out
RUN_SECONDS = 120.0  # a deadline for a run to reach its gate or finish, not a cost
# The bench stages versions in dev without publish-dev's verification, so each approval overrides readiness, as an
# approver may: the gate shows, checks and records the same things either way.
OVERRIDE = "bench: staged in dev without verification"


def _approval():
    from promo.release.approvals import Decision

    return Decision(approved=True, approver="bench", comment="bench", override_reason=OVERRIDE)


def _with_timers(spent: dict[str, float], call: Callable[[], object]) -> object:
    with timed_helpers(spent):
        return call()


def bench(runs: int) -> Report:
    from promo.flows.background import GatedRun
    from promo.flows.gate import approving_as
    from promo.release.gates import decide
    from promo.flows.promote import promote_test

    report = Report("1 approval", "decide() on a paused gate -> GitOps commit on the remote")
    with prefect_server(), sandbox_world("approval") as world:
        poll = world.config.gate.poll_interval_seconds
        configs = {poll: world.config_path, README_DEFAULT_POLL: world.config_with_gate(README_DEFAULT_POLL)}
        rounds = {poll: runs, README_DEFAULT_POLL: max(5, runs // 2)}
        suspended_runs = max(3, runs // 2)
        versions = iter(world.publish_charts(sum(rounds.values()) + 2 + 3 * (suspended_runs + 1), "b"))
        clone = raw_clone(world.gitops_remote, world.directory / "raw-clone")
        main_label = f"approval -> commit on remote (poll {poll:g} s, sandbox promo.yaml)"
        labels = {
            poll: main_label,
            README_DEFAULT_POLL: f"approval -> commit on remote (poll {README_DEFAULT_POLL:g} s, README default)",
        }

        progress("approval: warm-up promotion")
        world.set_version("dev", next(versions))
        with approving_as("bench", override_reason=OVERRIDE):
            promote_test(config_path=str(world.config_path))
        raw_push(clone, TEST_MANIFEST, "0.0.1")

        def one(interval: float, breakdown: bool) -> None:
            world.set_version("dev", next(versions))
            spent: dict[str, float] = defaultdict(float)
            flow = GatedRun(lambda: _with_timers(spent, lambda: promote_test(config_path=str(configs[interval]))))
            gate = flow.gate("test")
            settle_then_random_phase(interval)
            before = world.head()
            wall0, started = time.time(), time.perf_counter()
            decide(gate, _approval())
            resumed = time.perf_counter()
            seen = wait_for_new_head(world.gitops_remote, before)
            flow.join()
            report.add(labels[interval], seen - started)
            if breakdown:
                times = run_times(gate.flow_run_id, {"write-environment-version"})
                write = times.tasks.get("write-environment-version")
                report.add("· decide(): the resume API call", resumed - started)
                if write is not None:
                    to_write = write[0] - wall0  # approval -> write task starts
                    report.add(
                        "· the gate notices (poll), reads the input, records the decision",
                        to_write - (resumed - started) - spent["lock enter"],
                    )
                    report.add("· environment lock: ensure the limit, take the slot", spent["lock enter"])
                    report.add("· write task start -> commit on remote", seen - started - to_write)

        progress(
            f"approval: {runs} rounds at poll {poll:g} s, {rounds[README_DEFAULT_POLL]} at {README_DEFAULT_POLL:g} s"
        )
        for round_ in range(max(rounds.values())):
            for interval, count in rounds.items():
                if round_ < count:
                    one(interval, breakdown=interval == poll)
            report.add(
                "raw floor: fetch, sed, commit, push (cached clone)",
                raw_push(clone, TEST_MANIFEST, f"0.0.{round_ + 2}"),
            )

        hyperfine_runs = hyperfine({"raw": f"{RAW_PUSH} {clone} {TEST_MANIFEST}"}, runs=max(10, runs))
        if hyperfine_runs:
            report.extend("raw floor under hyperfine", hyperfine_runs["raw"])

        suspended_labels = suspended_rounds(report, world, versions, suspended_runs)

        report.absolute_goal("approval -> commit median (goal < 1 s)", main_label, 1.0)
        report.absolute_goal(
            "suspended approval -> commit median, promo's defaults (goal < 5 s)", suspended_labels[0], 5.0
        )
        report.ratio("approval -> commit / raw floor", main_label, "raw floor: fetch, sed, commit, push (cached clone)")
        report.note(
            f"gate.poll_interval_seconds = {poll:g} (sandbox promo.yaml): the paused run re-reads its state every "
            f"{poll:g} s, so the approval waits 0-{poll:g} s (mean {poll / 2:g} s) before the write starts; "
            f"at the README default of {README_DEFAULT_POLL:g} s that is 0-{README_DEFAULT_POLL:g} s"
        )
    return report


@contextmanager
def process_worker(directory: Path, settings: dict[str, str]) -> Iterator[subprocess.Popen]:
    """``prefect worker start --pool promo --type process`` on the bench's server, with ``settings`` in its
    environment; its flow runs keep their git caches in the bench's directory. Stopped by its process group."""
    from prefect.settings import PREFECT_API_URL

    from promo.local.prefect_server import worker_path

    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env |= {"PREFECT_API_URL": str(PREFECT_API_URL.value()), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env |= {"PROMO_CACHE_DIR": str(directory / "worker-cache"), "PATH": worker_path(), **settings}
    log = (directory / "worker.log").open("a")
    command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", "promo", "--type", "process"]
    worker = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield worker
    finally:
        stop_group(worker)
        log.close()


def _wait_for_run(flow_run_id, done: Callable[[object], bool], what: str):
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + RUN_SECONDS
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(flow_run_id)
            if done(run):
                return run
            if run.state.is_final():
                raise RuntimeError(f"{what}: the run ended {run.state.name}: {run.state.message}")
            time.sleep(0.1)
    raise TimeoutError(f"{what}: not within {RUN_SECONDS:g} s")


def _resumed_states(flow_run_id, after: float) -> dict[str, float]:
    """The epoch time of the first Pending (a worker took the run) and Running (its new process started the flow)
    after the approval."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        states = client.read_flow_run_states(flow_run_id)
    found: dict[str, float] = {}
    for state in sorted(states, key=lambda state: state.timestamp):
        moment = state.timestamp.timestamp()
        if moment >= after:
            found.setdefault(state.type.value, moment)
    return found


def suspended_rounds(report: Report, world, versions: Iterator[str], runs: int) -> list[str]:
    """promote-test through its deployment, suspended at its gate, approved, under each worker setting; the labels
    of the approval -> commit series (promo's defaults first)."""
    from prefect.deployments import run_deployment

    from promo.deployments.deploy import setup_all
    from promo.release.gates import decide, waiting_gates
    from promo.local.prefect_server import WORKER_SETTINGS

    app = world.config.app
    setup_all(world.config_path)
    workers = {  # name: (the worker's settings, the pool's job template as Prefect makes it)
        "promo's defaults": (WORKER_SETTINGS, False),
        "promo's worker settings, Prefect's job template (supervisor)": (WORKER_SETTINGS, True),
        "Prefect's defaults": (PREFECT_DEFAULT_WORKER, True),
    }
    labels = []
    for name, (settings, prefects_template) in workers.items():
        query = float(settings["PREFECT_WORKER_QUERY_SECONDS"])
        label = f"suspended: approval -> commit on remote ({name}, query every {query:g} s)"
        labels.append(label)
        progress(f"approval: {runs} suspended rounds, worker with {name}")
        with process_worker(world.directory, settings), _prefects_job_template(prefects_template):
            for round_ in range(runs + 1):  # the first round warms the worker's caches: not counted
                world.set_version("dev", next(versions))
                started = run_deployment(f"promote-test/{app}", timeout=0)
                _wait_for_run(started.id, lambda run: run.state.name == "Suspended", "promote-test to reach its gate")
                gate = next(gate for gate in waiting_gates(app=app, env="test") if gate.flow_run_id == started.id)
                time.sleep(random.uniform(0, query))  # the approval lands anywhere in the worker's query cycle
                before = world.head()
                wall0, clock0 = time.time(), time.perf_counter()
                decide(gate, _approval())
                seen = wait_for_new_head(world.gitops_remote, before, timeout=RUN_SECONDS)
                _wait_for_run(started.id, lambda run: run.state.is_completed(), "promote-test to finish")
                if round_ == 0:
                    continue
                report.add(label, seen - clock0)
                _break_down(report, name, started.id, wall0, seen - clock0)
    report.note(
        "suspended: a resumed run is put back in the queue to run now; the worker finds it at its next query "
        "(PREFECT_WORKER_QUERY_SECONDS), then starts a new process that imports Prefect and the flows and runs the "
        "flow again from the top, up to the gate, which finds its stored answer"
    )
    return labels


@contextmanager
def _prefects_job_template(wanted: bool) -> Iterator[None]:
    """With ``wanted``: the pool's base job template as Prefect makes it (no job command), so the process worker
    starts a workspace supervisor that then starts the engine (each a new interpreter importing Prefect) instead of
    the engine directly (``python -m prefect.engine``, the command of the pool `promo setup` creates)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolUpdate
    from prefect.workers.process import ProcessWorker

    if not wanted:
        yield
        return
    with get_client(sync_client=True) as client:
        promos = client.read_work_pool("promo").base_job_template
        client.update_work_pool("promo", WorkPoolUpdate(base_job_template=ProcessWorker.get_default_base_job_template()))
        try:
            yield
        finally:
            client.update_work_pool("promo", WorkPoolUpdate(base_job_template=promos))


def _break_down(report: Report, worker: str, flow_run_id, approved_at: float, total: float) -> None:
    states = _resumed_states(flow_run_id, approved_at)
    times = run_times(flow_run_id, {"write-environment-version"})
    write = times.tasks.get("write-environment-version")
    if "PENDING" not in states or "RUNNING" not in states or write is None:
        return
    running = states["RUNNING"]
    report.add(f"· {worker}: approval -> a worker takes the run (query interval)", states["PENDING"] - approved_at)
    report.add(f"· {worker}: new process: start, imports, load the flow", running - states["PENDING"])
    report.add(f"· {worker}: flow from the top to the write task (repeated reads, gate, lock)", write[0] - running)
    for task, (start, end) in sorted(times.tasks.items(), key=lambda item: item[1][0]):
        if running <= start < write[0]:
            report.add(f"· · {worker}: repeated before the write: {task}", end - start)
    report.add(f"· {worker}: write task start -> commit on remote", approved_at + total - write[0])


if __name__ == "__main__":
    cli(bench, default_runs=7)
