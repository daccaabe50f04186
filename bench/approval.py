"""Bench 1, approval to commit: from decide() on a paused promote-test gate to the GitOps commit on the remote.

Each round stages a new chart version in dev, starts promote-test in a thread (on a temporary Prefect server, as the
tests do), waits until its gate is Paused, waits a random fraction of the gate's poll interval (an approver clicks at
any point of the polling cycle), then calls ``flows.gate.decide`` and polls the bare remote's ref until it moves.
The gate's poll interval is the sandbox promo.yaml's ``gate.poll_interval_seconds``; the README's default (2 s) runs
too, to show how the interval bounds the latency. The raw floor (bench/floors/raw_push.sh: fetch, sed, commit, push
in a cached clone of the same remote) runs interleaved, and once more under hyperfine.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

from common import RAW_PUSH, Report, hyperfine, progress, raw_clone, raw_push, wait_for_new_head
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


def _with_timers(spent: dict[str, float], call: Callable[[], object]) -> object:
    with timed_helpers(spent):
        return call()


def bench(runs: int) -> Report:
    from flows.background import GatedRun
    from flows.gate import approving_as, decide
    from flows.promote import promote_test
    from promo.approvals import Decision

    report = Report("1 approval", "decide() on a paused gate -> GitOps commit on the remote")
    with prefect_server(), sandbox_world("approval") as world:
        poll = world.config.gate.poll_interval_seconds
        configs = {poll: world.config_path, README_DEFAULT_POLL: world.config_with_gate(README_DEFAULT_POLL)}
        rounds = {poll: runs, README_DEFAULT_POLL: max(5, runs // 2)}
        versions = iter(world.publish_charts(sum(rounds.values()) + 2, "b"))
        clone = raw_clone(world.gitops_remote, world.directory / "raw-clone")
        main_label = f"approval -> commit on remote (poll {poll:g} s, sandbox promo.yaml)"
        labels = {
            poll: main_label,
            README_DEFAULT_POLL: f"approval -> commit on remote (poll {README_DEFAULT_POLL:g} s, README default)",
        }

        progress("approval: warm-up promotion")
        world.set_version("dev", next(versions))
        with approving_as("bench"):
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
            decide(gate, Decision(approved=True, approver="bench", comment="bench"))
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

        report.absolute_goal("approval -> commit median (goal < 1 s)", main_label, 1.0)
        report.ratio("approval -> commit / raw floor", main_label, "raw floor: fetch, sed, commit, push (cached clone)")
        report.note(
            f"gate.poll_interval_seconds = {poll:g} (sandbox promo.yaml): the paused run re-reads its state every "
            f"{poll:g} s, so the approval waits 0-{poll:g} s (mean {poll / 2:g} s) before the write starts; "
            f"at the README default of {README_DEFAULT_POLL:g} s that is 0-{README_DEFAULT_POLL:g} s"
        )
    return report


if __name__ == "__main__":
    cli(bench, default_runs=7)
