"""Many apps, many workers, one GitOps repository: the world of tests/integration/test_many_workers.py and of the
``many-workers`` bench (bench/many_workers.py).

Three hosts in miniature: each process worker has its own ``PREFECT_HOME``, ``HOME``, ``PROMO_CACHE_DIR`` and working
directory, and shares nothing with the others but the Prefect server's API and the sandbox's remotes, registry and
stand-in (which play the network services). The apps' configs are on the server: each promo.yaml is stored with
``setup_all`` (what `promo setup --config` does), and no worker ever sees a promo.yaml. Runs start with
`prefect deployment run` and every gate is approved with `promo approve`, each a process of its own, all at once.

dev is staged without building an image: each app's RC chart is packaged from its remote and pushed, and dev's
manifests are set to it, as publish-dev would leave them. Nothing verified it in dev, so approvals give an override
reason. promote-test itself is the real flow, run by the workers.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.settings import PREFECT_API_URL, temporary_settings
from ruamel.yaml import YAML

from promo.clients import app_mirror, chart_repository, gitops_repo, open_registry
from promo.config import PromoConfig, load_config
from promo.deployments.deploy import setup_all
from promo.gitops.app_repo import read_chart_yaml
from promo.gitops.repo import Trailers, WriteRequest
from promo.local.sandbox import Sandbox, add_apps
from promo.registry.charts import package_chart
from promo.registry.helm import push_chart
from promo.versions import rc_version, short_sha
from tests.integration.conftest import BIN, PrefectServer, Worker, launch_worker, stop, tail

POOL = "promo"
APPROVER = "carol"
OVERRIDE_REASON = "dev staged by the many-worker run without publish-dev's verification"
CLI_SECONDS = 600  # a deadline per CLI process: 30 of them start at once on 2 cores (at load 35, one took > 300 s)
RUN_SECONDS = 600  # a deadline for all runs to reach a state, not a cost


def say(message: str) -> None:
    """Progress on stderr (pytest -s, the bench's log): where a slow round spends its time."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def app_names(count: int) -> list[str]:
    return [f"app-{index:02d}" for index in range(1, count + 1)]


@dataclass(frozen=True)
class Host:
    """One worker and what it would own on a host of its own."""

    name: str
    root: Path
    worker: Worker

    @property
    def cache(self) -> Path:
        return self.root / "cache"


@contextmanager
def hosts(server: PrefectServer, root: Path, count: int, *, limit: int) -> Iterator[list[Host]]:
    """``count`` process workers on the pool, each with its own homes, cache and working directory (at most
    ``limit`` flow runs at a time each); stopped by their PIDs on exit."""
    started: list[Host] = []
    try:
        for index in range(1, count + 1):
            host = root / f"host-{index}"
            for directory in ("home", "prefect-home"):
                (host / directory).mkdir(parents=True)
            worker = launch_worker(
                server, host, POOL, "--limit", str(limit), name="work",
                PREFECT_HOME=str(host / "prefect-home"), HOME=str(host / "home"), PROMO_CACHE_DIR=str(host / "cache"),
            )  # fmt: skip
            started.append(Host(f"host-{index}", host, worker))
        yield started
    finally:
        for host in started:
            stop(host.worker.process)


def set_up_apps(server: PrefectServer, sandbox: Sandbox, apps: Sequence[str], scratch: Path) -> dict[str, str]:
    """Add ``apps`` to the sandbox, store each one's config and deployments on the server, and stage an RC in dev;
    returns each app's dev version."""
    versions = {}
    with temporary_settings(updates={PREFECT_API_URL: server.url}):
        paths = add_apps(sandbox, apps)
        say(f"{len(paths)} apps added to the sandbox")
        for app, path in paths.items():
            setup_all(path, POOL)
        say(f"{len(paths)} apps set up on the server")
        for app, path in paths.items():
            versions[app] = stage_dev(load_config(path), scratch / "stage-cache")
        say(f"{len(paths)} apps staged in dev")
    return versions


def stage_dev(config: PromoConfig, cache: Path) -> str:
    """The RC chart of the app remote's head, pushed, and dev's manifests pointing at it (one GitOps commit)."""
    config = config.model_copy(update={"cache_dir": cache})
    mirror = app_mirror(config)
    mirror.fetch()
    commit = mirror.resolve(config.app_repo.branch)
    source = cache / "source" / config.app
    mirror.export_tree(commit, source)
    base = str(read_chart_yaml(mirror, commit, config.chart.path)["version"])
    chart = package_chart(source / config.chart.path, version=rc_version(base, commit), app_version=short_sha(commit))
    with open_registry(config, chart_repository(config)) as (registry, repository):
        pushed = push_chart(registry, repository, chart)
    dev = config.first_environment
    repo = gitops_repo(config)
    repo.set_version(
        WriteRequest(
            config.app,
            dev.name,
            dev.clusters,
            chart.version,
            expected=repo.plan(config.app, dev.name, dev.clusters, chart.version).current,
            subject=f"deploy({config.app}): {dev.name} -> {chart.version}",
            trailers=Trailers(chart_version=chart.version, chart_digest=pushed.digest),
        )
    )
    return chart.version


@dataclass
class Commits:
    """Commits as they land on the bare remote's main, each with the time it was first seen (polled every 20 ms)."""

    remote: Path
    base: str = ""
    seen: dict[str, float] = field(default_factory=dict)  # subject -> epoch seconds
    _stop: threading.Event = field(default_factory=threading.Event)

    @contextmanager
    def watching(self) -> Iterator[Commits]:
        self.base = head_of(self.remote)
        thread = threading.Thread(target=self._watch, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()

    def _watch(self) -> None:
        last = self.base
        while not self._stop.is_set():
            head = head_of(self.remote)
            if head != last:
                now = time.time()
                for subject in git(self.remote, "log", "--format=%s", f"{last}..{head}").splitlines():
                    self.seen.setdefault(subject, now)
                last = head
            self._stop.wait(0.02)


def head_of(remote: Path, branch: str = "main") -> str:
    """The branch's commit read from the bare repository's files: no process per poll."""
    loose = remote / "refs" / "heads" / branch
    try:
        return loose.read_text().strip()
    except FileNotFoundError:
        packed = (remote / "packed-refs").read_text()
        return re.search(rf"^([0-9a-f]{{40}}) refs/heads/{re.escape(branch)}$", packed, re.MULTILINE).group(1)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def cli_at_once(server: PrefectServer, commands: dict[str, list[str]], cwd: Path) -> dict[str, tuple[str, float]]:
    """Run every command at once, each a process of its own against the server; its output and when it returned,
    by key. A command that fails (or outlives CLI_SECONDS) raises, naming it and its output."""

    def one(argv: list[str]) -> tuple[subprocess.CompletedProcess, float]:
        result = subprocess.run(
            argv, env=server.env(), cwd=cwd, capture_output=True, text=True, timeout=CLI_SECONDS,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        return result, time.time()

    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        futures = {key: pool.submit(one, argv) for key, argv in commands.items()}
    done = {}
    for key, future in futures.items():
        result, returned = future.result()
        if result.returncode != 0:
            command = " ".join(commands[key])
            raise AssertionError(f"`{command}` exited {result.returncode}: {result.stdout}{result.stderr}")
        done[key] = (result.stdout, returned)
    return done


def start_runs(server: PrefectServer, apps: Sequence[str], cwd: Path) -> dict[str, UUID]:
    """`prefect deployment run promote-test/<app>` for every app at once; the flow run id each printed."""
    started = cli_at_once(
        server, {app: [str(BIN / "prefect"), "deployment", "run", f"promote-test/{app}"] for app in apps}, cwd
    )
    return {app: UUID(re.search(r"UUID: ([0-9a-f-]{36})", out).group(1)) for app, (out, _) in started.items()}


def approve_all(server: PrefectServer, runs: dict[str, UUID], cwd: Path) -> dict[str, float]:
    """`promo approve RUN --as carol --override-reason ...` for every gate at once; when each one returned."""
    commands = {
        app: [str(BIN / "promo"), "approve", str(run), "--as", APPROVER, "--comment", "many workers",
              "--override-reason", OVERRIDE_REASON]
        for app, run in runs.items()
    }  # fmt: skip
    approved = cli_at_once(server, commands, cwd)
    for app, (out, _) in approved.items():
        if f"approved {app} " not in out:
            raise AssertionError(f"`promo approve` for {app} said: {out}")
    return {app: returned for app, (_, returned) in approved.items()}


def wait_for_runs(
    server: PrefectServer, runs: dict[str, UUID], reached: Callable[[FlowRun], bool], what: str, workers: Sequence[Host]
) -> dict[str, FlowRun]:
    """Poll until every run ``reached`` its goal; a run that ends elsewhere fails at once, naming its state."""
    by_id = {run: app for app, run in runs.items()}
    deadline = time.monotonic() + RUN_SECONDS
    with temporary_settings(updates={PREFECT_API_URL: server.url}), get_client(sync_client=True) as client:
        while True:
            found = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(by_id))))
            states = {by_id[run.id]: run for run in found}
            lost = {app: run.state for app, run in states.items() if run.state.is_final() and not reached(run)}
            if lost or (len(states) == len(runs) and all(reached(run) for run in states.values())):
                break
            if time.monotonic() > deadline:
                lost = {app: run.state for app, run in states.items() if not reached(run)}
                break
            time.sleep(1)
    if lost:
        logs = "\n".join(f"--- {host.name}\n{tail(host.worker.log, 15)}" for host in workers)
        shown = "; ".join(f"{app}: {state.name} {state.message or ''}".strip() for app, state in sorted(lost.items()))
        raise AssertionError(f"not all runs {what} within {RUN_SECONDS} s: {shown}\n{logs}")
    return states


@dataclass(frozen=True)
class Round:
    """One round of promotions: every run started at once, suspended at its gate, approved at once, landed."""

    runs: dict[str, UUID]
    done: dict[str, FlowRun]
    base: str  # main of the GitOps remote before the first run started
    started: float  # epoch seconds: the first `prefect deployment run` started
    suspended: float  # all runs were seen suspended at their gates, and every `promo approve` starts
    approved: dict[str, float]  # app -> its `promo approve` returned
    decided: dict[str, float]  # app -> the server resumed its run (the decision arrived)
    landed: dict[str, float]  # app -> its commit was seen on the remote
    completed: float  # all runs were seen Completed

    def approval_to_commit(self) -> list[float]:
        return [self.landed[app] - self.decided[app] for app in self.decided if app in self.landed]


def promote_all(
    server: PrefectServer, sandbox: Sandbox, versions: dict[str, str], workers: Sequence[Host], cwd: Path
) -> Round:
    """promote-test for every app in ``versions``, started at once on the workers, every gate approved at once."""
    apps = sorted(versions)
    with Commits(sandbox.gitops_remote).watching() as commits:
        started = time.time()
        runs = start_runs(server, apps, cwd)
        say(f"{len(runs)} runs started in {time.time() - started:.1f} s")
        wait_for_runs(server, runs, lambda run: run.state.name == "Suspended", "suspended at their gates", workers)
        suspended = time.time()  # and the approvals start
        say(f"{len(runs)} runs suspended at their gates {suspended - started:.1f} s after the start")
        approved = approve_all(server, runs, cwd)
        say(f"{len(runs)} gates approved in {time.time() - suspended:.1f} s")
        done = wait_for_runs(server, runs, lambda run: run.state.is_completed(), "completed", workers)
        completed = time.time()
        say(f"{len(runs)} runs completed {completed - suspended:.1f} s after the approvals started")
    decided = resumed_at(server, runs)
    subjects = {f"promote({app}): dev -> test {versions[app]}": app for app in apps}
    landed = {subjects[subject]: at for subject, at in commits.seen.items() if subject in subjects}
    return Round(runs, done, commits.base, started, suspended, approved, decided, landed, completed)


def resumed_at(server: PrefectServer, runs: dict[str, UUID]) -> dict[str, float]:
    """When the server took each run's decision: the first state after its last Suspended one. The `promo approve`
    process can return long after that on a loaded machine (exit, output), so this is the approval's time."""
    decided = {}
    with temporary_settings(updates={PREFECT_API_URL: server.url}), get_client(sync_client=True) as client:
        for app, run in runs.items():
            states = sorted(client.read_flow_run_states(run), key=lambda state: state.timestamp)
            last = max(index for index, state in enumerate(states) if state.name == "Suspended")
            decided[app] = states[last + 1].timestamp.timestamp()
    return decided


def problems(sandbox: Sandbox, versions: dict[str, str], landed: Round, workers: Sequence[Host]) -> list[str]:
    """What is wrong after a round: each app's test environment not at its dev version, not exactly one commit per
    app since the round started (with its audit trailers), a worker that ran none of the runs."""
    done, base = landed.done, landed.base
    found = []
    yaml = YAML(typ="safe")
    for app, version in sorted(versions.items()):
        manifest = git(sandbox.gitops_remote, "show", f"main:registry/environments/test/preprod/{app}.yaml")
        running = yaml.load(manifest)["spec"]["source"]["targetRevision"]
        if running != version:
            found.append(f"{app} runs {running!r} in test, not its dev version {version}")
    messages = git(sandbox.gitops_remote, "log", "--format=%B%x00", f"{base}..main").split("\0")
    messages = [message.strip() for message in messages if message.strip()]
    if len(messages) != len(versions):
        found.append(f"{len(messages)} commits since the runs started, not {len(versions)}")
    for app, version in sorted(versions.items()):
        run = done[app]
        mine = [m for m in messages if m.splitlines()[0] == f"promote({app}): dev -> test {version}"]
        expected = ["Promoted-From: dev", f"Approved-By: {APPROVER}", f"Flow-Run: promote-test/{run.name} {run.id}"]
        if len(mine) != 1:
            found.append(f"{app}: {len(mine)} promote commits")
        elif missing := [line for line in expected if line not in mine[0].splitlines()]:
            found.append(f"{app}'s commit lacks {missing}")
    runs_of = {host.name: [app for app, run in done.items() if str(run.id) in host.worker.log.read_text()]
               for host in workers}  # fmt: skip
    found += [f"{name} ran no flow run" for name, ran in runs_of.items() if not ran]
    return found


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: the smallest value with at least ``fraction`` of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * fraction) - 1)] if ordered else float("nan")
