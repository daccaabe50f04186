"""The world the flow benches run in: a promo sandbox (bare remotes, docker-registry on loopback, promo.yaml), a
temporary Prefect server, and helpers to stage versions for promote-test without building anything."""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from common import progress, remote_head, scratch

TEST_MANIFEST = "registry/environments/test/preprod/hello.yaml"


@dataclass
class World:
    directory: Path
    sandbox: object  # promo.local.sandbox.Sandbox
    config_path: Path

    @property
    def config(self):
        from promo.config import load_config

        return load_config(self.config_path)

    @property
    def gitops_remote(self) -> Path:
        return self.sandbox.gitops_remote  # type: ignore[attr-defined]

    def head(self) -> str:
        return remote_head(self.gitops_remote)

    def publish_charts(self, count: int, prefix: str) -> list[str]:
        """Push ``count`` RC charts of the sample app (packaged from the app remote), so promote-test finds them."""
        from promo.registry.charts import package_chart
        from promo.clients import app_mirror, chart_repository, open_registry
        from promo.registry.helm import push_chart

        config = self.config
        source = self.directory / "chart-source"
        app_mirror(config).fetch()
        app_mirror(config).export_tree("main", source)
        versions = [f"0.1.0-rc.{prefix}{index}" for index in range(count)]
        with open_registry(config, chart_repository(config)) as (registry, repository):
            for version in versions:
                push_chart(
                    registry,
                    repository,
                    package_chart(source / config.chart.path, version=version, app_version="bench"),
                )
        return versions

    def set_version(self, env: str, version: str) -> None:
        """Put ``version`` into ``env`` the way publish-dev would, through the bench's own cache."""
        from promo.gitops.repo import GitOpsRepo, Trailers, WriteRequest

        config = self.config
        repo = GitOpsRepo(config.gitops.url, config.gitops.branch, self.directory / "bench-cache", config.gitops.root)
        clusters = config.environment(env).clusters
        repo.set_version(
            WriteRequest(
                config.app,
                env,
                clusters,
                version,
                expected=repo.plan(config.app, env, clusters, version).current,
                subject=f"bench: {env} -> {version}",
                trailers=Trailers(),
            )
        )

    def config_with_gate(self, poll_interval: float) -> Path:
        """A copy of the sandbox's promo.yaml with another gate poll interval."""
        from ruamel.yaml import YAML

        yaml = YAML()
        data = yaml.load(self.config_path.read_text())
        data["gate"] = {**dict(data.get("gate") or {}), "poll_interval_seconds": poll_interval}
        path = self.directory / f"promo-poll-{poll_interval:g}.yaml"
        with path.open("w") as out:
            yaml.dump(data, out)
        return path


@contextmanager
def prefect_server() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    started = time.perf_counter()
    with prefect_test_harness(server_startup_timeout=120):
        progress(f"temporary Prefect server up in {time.perf_counter() - started:.1f} s")
        yield


@contextmanager
def sandbox_world(prefix: str) -> Iterator[World]:
    from promo.local.sandbox import create_sandbox, stop_sandbox

    with scratch(prefix) as directory:
        sandbox = create_sandbox(directory / "world")
        try:
            yield World(directory, sandbox, sandbox.config_path)
        finally:
            stop_sandbox(sandbox.directory)


def settle_then_random_phase(poll_interval: float) -> None:
    """Wait for the gate to finish saving its form, then a random fraction of one poll interval: an approver's click
    lands anywhere in the gate's polling cycle, so the latency is sampled over the whole cycle."""
    time.sleep(0.3 + random.uniform(0, poll_interval))


@dataclass(frozen=True)
class RunTimes:
    """What the Prefect API recorded for one flow run: its own start/end and each task run's."""

    start: float | None
    end: float | None
    tasks: dict[str, tuple[float, float]]  # task name -> (start, end), epoch seconds; a repeated name is summed apart
    artifacts: int


def run_times(flow_run_id: UUID, required: set[str], timeout: float = 15.0) -> RunTimes:
    """Read the run back from the API; task runs are recorded from events, so wait until the ``required`` task names
    are there and finished (a task the flow no longer runs only costs the timeout)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            flow_run = client.read_flow_run(flow_run_id)
            task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            done = [run for run in task_runs if run.start_time is not None and run.end_time is not None]
            names = {_task_name(run.name) for run in done}
            if (required <= names and flow_run.end_time is not None) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    tasks: dict[str, tuple[float, float]] = {}
    for run in done:
        name = _task_name(run.name)
        while name in tasks:
            name += "'"
        tasks[name] = (_epoch(run.start_time), _epoch(run.end_time))
    return RunTimes(_epoch(flow_run.start_time), _epoch(flow_run.end_time), tasks, len(artifacts))


def _task_name(run_name: str) -> str:
    return run_name.rsplit("-", 1)[0]  # "write-environment-version-3f2" -> the task's name


def _epoch(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None


ARTIFACT_CALLS = ("create_markdown_artifact", "create_table_artifact", "create_link_artifact")


def _promo_modules() -> list[Any]:
    return [module for name, module in list(sys.modules.items()) if name.startswith(("promo.flows.", "promo.tasks.")) and module]


def patch_promo(replacements: dict[str, Callable[[Callable], Any]]) -> list[tuple[Any, str, Any]]:
    """Replace names promo's flow and task modules imported; returns what to put back."""
    undo = []
    for module in _promo_modules():
        for name, make in replacements.items():
            original = module.__dict__.get(name)
            if original is not None:
                undo.append((module, name, original))
                setattr(module, name, make(original))
    return undo


def unpatch_promo(undo: list[tuple[Any, str, Any]]) -> None:
    for module, name, original in reversed(undo):
        setattr(module, name, original)


@contextmanager
def timed_helpers(spent: dict[str, float]) -> Iterator[None]:
    """In a real flow run: time the environment lock (enter and exit) and artifact calls made outside tasks."""
    from prefect.context import TaskRunContext

    def lock(original: Callable) -> Callable:
        @contextmanager
        def timed_lock(*args: Any, **kwargs: Any) -> Iterator[None]:
            manager = original(*args, **kwargs)
            started = time.perf_counter()
            manager.__enter__()
            spent["lock enter"] += time.perf_counter() - started
            try:
                yield
            except BaseException:
                started = time.perf_counter()
                if not manager.__exit__(*sys.exc_info()):
                    raise
            else:
                started = time.perf_counter()
                manager.__exit__(None, None, None)
            finally:
                spent["lock exit"] += time.perf_counter() - started

        return timed_lock

    def artifact(original: Callable) -> Callable:
        def timed_artifact(*args: Any, **kwargs: Any) -> Any:
            if TaskRunContext.get() is not None:  # inside a task: already part of that task run's time
                return original(*args, **kwargs)
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent["artifacts"] += time.perf_counter() - started

        return timed_artifact

    undo = patch_promo({"environment_lock": lock, **{name: artifact for name in ARTIFACT_CALLS}})
    try:
        yield
    finally:
        unpatch_promo(undo)
