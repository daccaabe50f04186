"""Bench 4, flow overhead: promote-test (gate pre-approved) and publish-dev as Prefect flows vs the same domain calls
without Prefect, and where publish-dev's time goes.

"Without Prefect" calls each task's function (``task.fn``) in the flow's order, so the domain work is identical and
only orchestration is left out. The flows' own breakdown is read back from the Prefect API: when the run started and
ended, and each task run's start and end; what is left of the wall time is orchestration. Flows and plain calls run
interleaved on one sandbox and one temporary Prefect server.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import TypeVar

from common import Report, hyperfine, progress
from common import main as cli
from world import World, prefect_server, run_times, sandbox_world

T = TypeVar("T")

PROMOTE_STEPS = {
    "read dev's version (fetch)": ["read-environment-version"],
    "find the chart (registry HEAD)": ["find-chart"],
    "plan (fetch)": ["plan-environment-version"],
    "describe the change (fetch, registry, app log)": ["describe-change"],
    "write test (fetch, commit, push)": ["write-environment-version"],
}
PUBLISH_STEPS = {
    "source: registry check, Chart.yaml, build commit, export": [
        "check-registry-access",
        "read-chart-base-version",
        "resolve-build-commit",
        "export-source",
    ],
    "build + push image (buildah)": ["build-image"],
    "package chart": ["package-rc-chart"],
    "push chart": ["push-chart"],
    "manifest: GitOps write to dev": ["write-environment-version"],
}


class Steps:
    """Time named steps of a plain (no Prefect) run."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str, call: Callable[[], T]) -> T:
        started = time.perf_counter()
        try:
            return call()
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


def plain_promote(config_path: str, approver: str) -> Steps:
    """promote_into("test") of flows/promote.py, minus Prefect: the same calls in the same order."""
    from promo.approvals import ApprovalRequest, check_approver
    from promo.clients import load_checked_config
    from promo.gitops import Trailers
    from tasks.chart import find_chart
    from tasks.gitops import plan_environment_version, read_environment_version, write_environment_version

    try:
        from tasks.describe import describe_change
    except ImportError:  # before the approval screen showed the change
        describe_change = None
    step = Steps()
    config = step("load promo.yaml", lambda: load_checked_config(config_path))
    source = config.source_of("test").name
    version = step("read dev's version (fetch)", lambda: read_environment_version.fn(config, source))
    digest = step("find the chart (registry HEAD)", lambda: find_chart.fn(config, version))
    plan = step("plan (fetch)", lambda: plan_environment_version.fn(config, "test", version))
    # ask_approval (flows/gate.py): what the approver is shown, then the pre-approval check
    change = step(
        "describe the change (fetch, registry, app log)",
        lambda: describe_change.fn(config, "test", version, digest) if describe_change else None,
    )
    request = ApprovalRequest(
        config.app, version, source, "test", plan.diff, tuple(config.environment("test").approvers), digest,
        image=getattr(change, "image", None),
    )  # fmt: skip
    check_approver(request, approver)
    step(
        "write test (fetch, commit, push)",
        lambda: write_environment_version.fn(
            config,
            "test",
            version,
            subject=f"promote({config.app}): {source} -> test {version}",
            trailers=Trailers(promoted_from=source, chart_version=version, chart_digest=digest, flow_run="bench/plain", approved_by=approver),
        ),
    )
    return step


def plain_publish(config_path: str) -> Steps:
    """publish_dev of flows/publish_dev.py, minus Prefect."""
    from promo.clients import load_checked_config
    from promo.gitops import Trailers
    from promo.versions import short_sha
    from tasks.chart import check_registry_access, package_rc_chart, push_rc_chart
    from tasks.gitops import write_environment_version
    from tasks.image import build_image
    from tasks.source import BuildRequest, export_source, read_chart_base_version, resolve_build_commit

    step = Steps()
    source_step = "source: registry check, Chart.yaml, build commit, export"
    config = step("load promo.yaml", lambda: load_checked_config(config_path))
    request = BuildRequest.checked(None, "main")
    step(source_step, lambda: check_registry_access.fn(config))
    base = step(source_step, lambda: read_chart_base_version.fn(config, request))
    commit = step(source_step, lambda: resolve_build_commit.fn(config, request))
    with TemporaryDirectory(prefix="promo-source-") as workdir:
        source = step(source_step, lambda: export_source.fn(config, commit, Path(workdir)))
        image = step("build + push image (buildah)", lambda: build_image.fn(config, source, tag=short_sha(commit)))
        chart = step("package chart", lambda: package_rc_chart.fn(config, source, base, commit))
    pushed = step("push chart", lambda: push_rc_chart.fn(config, chart))
    env = config.first_environment.name
    step(
        "manifest: GitOps write to dev",
        lambda: write_environment_version.fn(
            config,
            env,
            chart.version,
            subject=f"deploy({config.app}): {env} -> {chart.version}",
            trailers=Trailers(chart_version=chart.version, chart_digest=pushed.digest, image=image.pinned, flow_run="bench/plain"),
        ),
    )
    return step


def flow_breakdown(report: Report, prefix: str, state, wall0: float, wall1: float, steps: dict[str, list[str]]) -> None:  # noqa: ANN001
    """Split a flow call's wall time with what the API recorded."""
    times = run_times(state.state_details.flow_run_id, {name for names in steps.values() for name in names})
    task_total = 0.0
    for label, names in steps.items():
        seconds = sum(end - start for name, (start, end) in times.tasks.items() if name.rstrip("'") in names)
        task_total += seconds
        report.add(f"{prefix}: {label} (task runs)", seconds)
    if times.start is not None and times.end is not None:
        report.add(f"{prefix}: before the run starts (create run, engine start)", times.start - wall0)
        report.add(f"{prefix}: in the run, outside tasks (task orchestration, artifacts)", times.end - times.start - task_total)
        report.add(f"{prefix}: after the run ends (engine exit, heartbeat join)", wall1 - times.end)


def bench(runs: int) -> Report:
    from flows.promote import promote_test
    from flows.publish_dev import publish_dev

    report = Report("4 flow overhead", "flows vs the same domain calls without Prefect")
    with prefect_server(), sandbox_world("flows") as world:
        config = str(world.config_path)
        versions = iter(world.publish_charts(2 * runs + 2, "f"))

        progress("flow overhead: warm-up (one of each)")
        world.set_version("dev", next(versions))
        promote_test(config_path=config, approve_as="bench")
        world.set_version("dev", next(versions))
        plain_promote(config, "bench")
        publish_dev(config_path=config)
        plain_publish(config)

        progress(f"flow overhead: {runs} rounds of promote-test and publish-dev, flow and plain")
        for _ in range(runs):
            _promote_round(report, world, config, versions, promote_test)
            _publish_round(report, config, publish_dev)

        progress("flow overhead: unit costs of orchestration (no-op task run, one artifact)")
        for label, values in _unit_costs(max(7, runs)).items():
            report.extend(label, values)

        report.ratio("promote-test: flow / no Prefect", "promote-test flow, pre-approved (wall)", "promote-test, no Prefect (wall)")
        report.ratio("publish-dev: flow / no Prefect", "publish-dev flow (wall)", "publish-dev, no Prefect (wall)")

    progress("flow overhead: import cost in a new process (hyperfine)")
    python = sys.executable
    imports = hyperfine(
        {
            "import promo's flows (Prefect included), new process": f"{python} -c 'import flows.promote, flows.publish_dev'",
            "import promo's core (no Prefect), new process": f"{python} -c 'import promo.gitops, promo.helm_oci, promo.clients'",
        },
        runs=max(5, runs),
    )
    for label, values in imports.items():
        report.extend(label, values)
    return report


def _unit_costs(samples: int) -> dict[str, list[float]]:
    """What one no-op task run and one markdown artifact cost inside a running flow (the flows' building blocks)."""
    from prefect import flow, task
    from prefect.artifacts import create_markdown_artifact

    @task(name="bench-noop")
    def noop() -> None:
        return None

    @flow(name="bench-unit-costs")
    def probe() -> dict[str, list[float]]:
        costs: dict[str, list[float]] = {"one no-op task run (in a flow)": [], "one create_markdown_artifact (in a flow)": []}
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


def _promote_round(report: Report, world: World, config: str, versions, promote_test) -> None:  # noqa: ANN001
    world.set_version("dev", next(versions))
    wall0, started = time.time(), time.perf_counter()
    state = promote_test(config_path=config, approve_as="bench", return_state=True)
    report.add("promote-test flow, pre-approved (wall)", time.perf_counter() - started)
    wall1 = time.time()
    assert state.is_completed(), state
    flow_breakdown(report, "promote-test flow", state, wall0, wall1, PROMOTE_STEPS)

    world.set_version("dev", next(versions))
    started = time.perf_counter()
    steps = plain_promote(config, "bench")
    report.add("promote-test, no Prefect (wall)", time.perf_counter() - started)
    for label, seconds in steps.seconds.items():
        report.add(f"promote-test, no Prefect: {label}", seconds)


def _publish_round(report: Report, config: str, publish_dev) -> None:  # noqa: ANN001
    wall0, started = time.time(), time.perf_counter()
    state = publish_dev(config_path=config, return_state=True)
    report.add("publish-dev flow (wall)", time.perf_counter() - started)
    wall1 = time.time()
    assert state.is_completed(), state
    flow_breakdown(report, "publish-dev flow", state, wall0, wall1, PUBLISH_STEPS)

    started = time.perf_counter()
    steps = plain_publish(config)
    report.add("publish-dev, no Prefect (wall)", time.perf_counter() - started)
    for label, seconds in steps.seconds.items():
        report.add(f"publish-dev, no Prefect: {label}", seconds)


if __name__ == "__main__":
    cli(bench, default_runs=5)
