"""Bench 4, flow overhead: promote-test (gate pre-approved) and publish-dev as Prefect flows vs the same code without
Prefect, and where each flow's time goes.

"Without Prefect" runs the flow's own function (``flow.fn``) with every task called as its plain function (timed by
task name) and the Prefect-only helpers swapped for stand-ins: artifacts and the environment lock do nothing, the run
label is fixed. So the domain work is exactly the flow's, whatever the flow does today, and only orchestration is
left out. The flow's breakdown comes from the Prefect API (the run's start and end, each task run's start and end)
plus timers wrapped around the environment lock and the artifact calls made outside tasks; the rest of the run is
the task-run engine. Flows and plain runs alternate on one sandbox and one temporary Prefect server.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from common import Report, hyperfine, progress
from common import main as cli
from world import ARTIFACT_CALLS, patch_promo, prefect_server, run_times, sandbox_world, timed_helpers, unpatch_promo

PROMOTE = "promote-test"
PUBLISH = "publish-dev"
CATEGORIES = {
    PROMOTE: {
        "read dev's version, find the chart, plan (tasks)": [
            "read-environment-version",
            "find-chart",
            "plan-environment-version",
        ],
        "describe the change for the approver (task)": ["describe-change"],
        "GitOps write (task)": ["write-environment-version"],
        "environments table artifact (task)": ["publish-environment-table"],
    },
    PUBLISH: {
        "source: registry check, Chart.yaml, build commit, export (tasks)": [
            "check-registry-access",
            "read-chart-base-version",
            "resolve-build-commit",
            "export-source",
        ],
        "build + push image, buildah (task)": ["build-image"],
        "package chart (task)": ["package-rc-chart"],
        "push chart (task)": ["push-chart"],
        "GitOps write (task)": ["write-environment-version"],
        "environments table artifact (task)": ["publish-environment-table"],
    },
}
OTHER_TASKS = "other tasks"


def _category(flow: str, task_name: str) -> str:
    return next((label for label, names in CATEGORIES[flow].items() if task_name in names), OTHER_TASKS)


@contextmanager
def without_prefect(spent: dict[str, float]) -> Iterator[None]:
    """Run a flow's function with no Prefect at all: tasks are plain calls (timed into ``spent`` by task name)."""
    from prefect.tasks import Task

    def plain_call(task: Task, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return task.fn(*args, **kwargs)
        finally:
            spent[task.name] += time.perf_counter() - started

    @contextmanager
    def no_lock(*_args: Any, **_kwargs: Any) -> Iterator[None]:
        yield

    original_call = Task.__call__
    Task.__call__ = plain_call  # type: ignore[method-assign]
    undo = patch_promo(
        {
            "environment_lock": lambda _original: no_lock,
            "get_run_logger": lambda _original: lambda *args, **kwargs: logging.getLogger("promo.bench"),
            "flow_run_label": lambda _original: lambda: "bench/no-prefect",
            **{name: (lambda _original: lambda *args, **kwargs: None) for name in ARTIFACT_CALLS},
        }
    )
    try:
        yield
    finally:
        unpatch_promo(undo)
        Task.__call__ = original_call  # type: ignore[method-assign]


def measure_flow(report: Report, label: str, call: Callable[[], Any]) -> None:
    spent: dict[str, float] = defaultdict(float)
    with timed_helpers(spent):
        wall0, started = time.time(), time.perf_counter()
        state = call()
        wall = time.perf_counter() - started
        wall1 = time.time()
    if not state.is_completed():
        raise RuntimeError(f"{label} ended {state.type}: {state.message}")
    report.add(f"{label} flow (wall)", wall)
    task_names = {name for names in CATEGORIES[label].values() for name in names}
    times = run_times(state.state_details.flow_run_id, task_names - {"publish-environment-table", "describe-change"})
    by_category: dict[str, float] = defaultdict(float)
    for name, (start, end) in times.tasks.items():
        by_category[_category(label, name.rstrip("'"))] += end - start
    for category in [*CATEGORIES[label], OTHER_TASKS]:
        if category in by_category:
            report.add(f"{label} flow: {category}", by_category[category])
    if times.start is None or times.end is None:
        return
    in_run = times.end - times.start
    lock = spent["lock enter"] + spent["lock exit"]
    rest = in_run - sum(by_category.values()) - lock - spent["artifacts"]
    report.add(f"{label} flow: before the run starts (create run, engine start)", times.start - wall0)
    report.add(f"{label} flow: environment lock (ensure limit, take and give back the slot)", lock)
    report.add(f"{label} flow: artifacts created outside tasks", spent["artifacts"])
    report.add(f"{label} flow: rest of the run (task-run engine, logs, flow code)", rest)
    report.add(f"{label} flow: after the run ends (engine exit, heartbeat thread join)", wall1 - times.end)


def measure_plain(report: Report, label: str, call: Callable[[], Any]) -> None:
    spent: dict[str, float] = defaultdict(float)
    with without_prefect(spent):
        started = time.perf_counter()
        call()
        wall = time.perf_counter() - started
    report.add(f"{label} without Prefect (wall)", wall)
    by_category: dict[str, float] = defaultdict(float)
    for name, seconds in spent.items():
        by_category[_category(label, name)] += seconds
    for category in [*CATEGORIES[label], OTHER_TASKS]:
        if category in by_category:
            report.add(f"{label} without Prefect: {category}", by_category[category])
    report.add(f"{label} without Prefect: flow code outside tasks (config, checks)", wall - sum(by_category.values()))


def _unit_costs(samples: int) -> dict[str, list[float]]:
    """What one no-op task run and one markdown artifact cost inside a running flow (the flows' building blocks)."""
    from prefect import flow, task
    from prefect.artifacts import create_markdown_artifact

    @task(name="bench-noop")
    def noop() -> None:
        return None

    @flow(name="bench-unit-costs")
    def probe() -> dict[str, list[float]]:
        costs: dict[str, list[float]] = {
            "one no-op task run (in a flow)": [],
            "one create_markdown_artifact (in a flow)": [],
        }
        for _ in range(samples):
            started = time.perf_counter()
            noop()
            costs["one no-op task run (in a flow)"].append(time.perf_counter() - started)
            started = time.perf_counter()
            create_markdown_artifact(key="bench-probe", markdown="probe", description="bench")
            costs["one create_markdown_artifact (in a flow)"].append(time.perf_counter() - started)
        return costs

    probe()  # warm
    return probe()


def bench(runs: int) -> Report:
    from promo.flows.gate import approving_as
    from promo.flows.promote import promote_test
    from promo.flows.publish_dev import publish_dev

    report = Report("4 flow overhead", "flows vs the same code without Prefect")
    # The bench stages versions in dev without publish-dev's verification: each pre-approval overrides readiness.
    unverified = "bench: staged in dev without verification"
    with prefect_server(), sandbox_world("flows") as world, approving_as("bench", override_reason=unverified):
        config = str(world.config_path)
        versions = iter(world.publish_charts(2 * runs + 2, "f"))

        def promote_flow() -> Any:
            world.set_version("dev", next(versions))
            return lambda: promote_test(config_path=config, return_state=True)

        def promote_plain() -> Any:
            world.set_version("dev", next(versions))
            return lambda: promote_test.fn(config_path=config)

        progress("flow overhead: warm-up (one of each)")
        measure_flow(Report("warm-up", ""), PROMOTE, promote_flow())
        measure_plain(Report("warm-up", ""), PROMOTE, promote_plain())
        measure_flow(Report("warm-up", ""), PUBLISH, lambda: publish_dev(config_path=config, return_state=True))
        measure_plain(Report("warm-up", ""), PUBLISH, lambda: publish_dev.fn(config_path=config))

        progress(f"flow overhead: {runs} rounds of promote-test and publish-dev, flow and plain")
        for _ in range(runs):
            measure_flow(report, PROMOTE, promote_flow())
            measure_plain(report, PROMOTE, promote_plain())
            measure_flow(report, PUBLISH, lambda: publish_dev(config_path=config, return_state=True))
            measure_plain(report, PUBLISH, lambda: publish_dev.fn(config_path=config))

        progress("flow overhead: unit costs of orchestration (no-op task run, one artifact)")
        for label, values in _unit_costs(max(7, runs)).items():
            report.extend(label, values)

    report.ratio(f"{PROMOTE}: flow / without Prefect", f"{PROMOTE} flow (wall)", f"{PROMOTE} without Prefect (wall)")
    report.ratio(f"{PUBLISH}: flow / without Prefect", f"{PUBLISH} flow (wall)", f"{PUBLISH} without Prefect (wall)")

    progress("flow overhead: import cost in a new process (hyperfine)")
    python = sys.executable
    imports = hyperfine(
        {
            "import promo's flows (Prefect included), new process": f"{python} -c 'import promo.flows.promote, promo.flows.publish_dev'",
            "import promo's core (no Prefect), new process": f"{python} -c 'import promo.gitops.repo, promo.registry.helm, promo.clients'",
        },
        runs=max(5, runs),
    )
    for label, values in imports.items():
        report.extend(label, values)
    return report


if __name__ == "__main__":
    cli(bench, default_runs=5)
