"""The `promo` command: thin over the flows. It parses, starts a flow or a query, and prints.

Every PromoError, and Prefect's failure to start its temporary API, becomes one line on stderr and an exit code; nothing
else is caught.
"""

from __future__ import annotations

import dataclasses
import functools
import getpass
import json
import logging
import os
import re
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Optional, TypeVar

import typer

from promo.errors import InputError, PromoError

if TYPE_CHECKING:
    from promo.config import PromoConfig
    from promo.reports.estate import Estate

app = typer.Typer(
    name="promo",
    help="GitOps release promotion: one image and one chart, moved unchanged from dev to prod.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOption = Annotated[
    Optional[str],
    typer.Option("--config", "-c", help="promo.yaml to use (default: $PROMO_CONFIG, then ./promo.yaml)"),
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="approve the gate now, as the current user")]
OverrideOption = Annotated[
    Optional[str],
    typer.Option(
        "--override-reason",
        help=(
            "why the version moves although it is not verified or soaked in its source, or replaces a newer build "
            "in the target (recorded in the commit)"
        ),
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]

Command = TypeVar("Command", bound=Callable[..., None])
HEARTBEAT_ENV = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"


def flow_command(name: str) -> Callable[[Command], Command]:
    """``@app.command`` for a command that runs a flow: Prefect's console logging is set up (PromoErrors as one line)
    only when such a command runs, so every other command answers without importing Prefect (seconds)."""


    def register(command: Command) -> Command:
        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> None:
            _quiet_console_promo_errors()
            with _without_heartbeats_unless_asked():
                command(*args, **kwargs)

        app.command(name)(run)
        return command

    return register


def echo_json(value: Any) -> None:
    """Dataclasses as objects, times in ISO 8601, ids as strings."""
    typer.echo(json.dumps(value, indent=2, default=_json_value))


def _json_value(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def current_user() -> str:
    return os.environ.get("PROMO_USER") or getpass.getuser()


@flow_command("publish-dev")
def publish_dev(
    sha: Annotated[Optional[str], typer.Option(help="commit to build (default: a new empty build commit)")] = None,
    branch: Annotated[
        Optional[str], typer.Option(help="branch the commit is on (default: app_repo.branch in promo.yaml)")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Build and push the image and the RC chart, then deploy it to the first environment."""
    from promo.flows.publish_dev import publish_dev as flow

    published = flow(sha=sha, branch=branch, config_path=config)
    typer.echo(published.summary())


def _approving_if(yes: bool, override_reason: str | None = None):
    """``--yes``: the person running the command approves its gate, in this process only."""

    from promo.flows.gate import approving_as

    if override_reason is not None and not yes:
        raise InputError("--override-reason goes with --yes", "add --yes, or give the reason at the gate's form")
    return approving_as(current_user(), override_reason) if yes else nullcontext()


def _promote(target: str, yes: bool, override_reason: str | None, config: str | None) -> None:
    from promo.flows.promote import FLOWS

    with _approving_if(yes, override_reason):
        promotion = FLOWS[target](config_path=config)
    typer.echo(promotion.summary())


@flow_command("promote-test")
def promote_test(yes: YesOption = False, override_reason: OverrideOption = None, config: ConfigOption = None) -> None:
    """Promote the version running in dev to test, after approval."""
    _promote("test", yes, override_reason, config)


@flow_command("promote-stage")
def promote_stage(yes: YesOption = False, override_reason: OverrideOption = None, config: ConfigOption = None) -> None:
    """Promote the version running in test to stage, after approval."""
    _promote("stage", yes, override_reason, config)


@flow_command("release-prod")
def release_prod(yes: YesOption = False, override_reason: OverrideOption = None, config: ConfigOption = None) -> None:
    """Release the RC running in stage to prod as X.Y.Z, after approval; safe to run again after any failure."""
    from promo.flows.release_prod import release_prod as flow

    with _approving_if(yes, override_reason):
        released = flow(config_path=config)
    typer.echo(released.summary())


@flow_command("rollback")
def rollback(
    env: Annotated[str, typer.Argument(help="the environment to roll back")],
    to: Annotated[
        Optional[str], typer.Option(help="the version to put back (default: the last one verified in ENV)")
    ] = None,
    yes: YesOption = False,
    config: ConfigOption = None,
) -> None:
    """Put back the last version verified in ENV (or --to VERSION, verified there), after approval, and verify it."""
    from promo.flows.rollback import rollback as flow

    with _approving_if(yes):
        rolled_back = flow(env=env, to=to, config_path=config)
    typer.echo(rolled_back.summary())


@flow_command("hotfix")
def hotfix(
    tag: Annotated[str, typer.Argument(help="the release to fix, vX.Y.Z")],
    config: ConfigOption = None,
) -> None:
    """Branch hotfix-X-Y-(Z+1) from a release tag, set its chart version, and open a draft pull request."""
    from promo.flows.hotfix import hotfix as flow
    from promo.versions import parse_release_tag

    parse_release_tag(tag)
    typer.echo(flow(tag=tag, config_path=config).summary())


@flow_command("bump-version")
def bump_version(
    part: Annotated[str, typer.Argument(help="patch, minor or major")],
    config: ConfigOption = None,
) -> None:
    """Bump the chart version on main by one part."""
    from promo.flows.bump_version import bump_version as flow
    from promo.versions import check_bump_part

    change = flow(part=check_bump_part(part), config_path=config)
    typer.echo(f"chart version {change.before} -> {change.after} (commit {change.commit})")


@app.command("releases")
def releases(as_json: JsonOption = False, config: ConfigOption = None) -> None:
    """List the releases of the app (git tags with notes, or GitHub releases)."""
    from promo.clients import forge
    from promo.config import load_config
    from promo.cli.table import print_table

    found = forge(load_config(config)).list_releases()
    if as_json:
        echo_json(found)
    elif not found:
        typer.echo("no releases yet")
    else:
        print_table(["tag", "commit", "name", "url"], [[r.tag, r.commit[:12], r.name, r.url or "-"] for r in found])


@app.command("approve")
def approve(
    run_id: Annotated[Optional[str], typer.Argument(help="flow run id of the waiting gate")] = None,
    env: Annotated[Optional[str], typer.Option(help="the gate waiting to promote into ENV")] = None,
    reject: Annotated[bool, typer.Option("--reject", help="reject instead of approving")] = False,
    comment: Annotated[str, typer.Option(help="why")] = "",
    as_name: Annotated[Optional[str], typer.Option("--as", help="approver name (default: current user)")] = None,
    override_reason: OverrideOption = None,
    config: ConfigOption = None,
) -> None:
    """Approve (or --reject) a promotion waiting at its gate: by flow run id, or by environment (with promo.yaml)."""
    from promo.release.gates import decide
    from promo.release.approvals import Decision
    from promo.config import load_config

    app_name = None
    if env is not None:
        settings = load_config(config)
        env, app_name = settings.environment(env).name, settings.app
    gate = _one_gate(run_id, env, app_name)
    approver = as_name or current_user()
    decide(gate, Decision(not reject, approver, comment, via="cli", override_reason=override_reason or ""))
    verdict = "rejected" if reject else "approved"
    typer.echo(f"{verdict} {gate.app} {gate.version} into {gate.env} (flow run {gate.flow_run_id})")


def _one_gate(run_id: str | None, env: str | None, app_name: str | None):
    from promo.release.gates import waiting_gates

    if (run_id is None) == (env is None):
        raise InputError("name exactly one gate", "pass a flow run id or --env ENV (see `promo pending`)")
    gates = waiting_gates(app=app_name, env=env) if env else [g for g in waiting_gates() if str(g.flow_run_id) == run_id]
    if not gates:
        what = f"into {env}" if env else f"with flow run id {run_id}"
        raise InputError(f"no gate is waiting {what}", "run `promo pending` to see the waiting gates")
    if len(gates) > 1:
        raise InputError(f"{len(gates)} gates are waiting into {env}", "name one by its flow run id (see `promo pending`)")
    return gates[0]


@app.command("pending")
def pending(
    as_json: JsonOption = False,
    config: Annotated[
        Optional[str],
        typer.Option("--config", "-c", help="only the gates of the app in this promo.yaml (default: all)"),
    ] = None,
) -> None:
    """List the gates waiting for a decision."""
    from promo.release.gates import waiting_gates
    from promo.config import load_config
    from promo.cli.table import print_table

    gates = waiting_gates(app=load_config(config).app if config else None)
    if as_json:
        echo_json(gates)
    elif not gates:
        typer.echo("no gates waiting")
    else:
        print_table(
            ["flow run", "app", "env", "version", "waiting since", "url"],
            [
                [str(g.flow_run_id), g.app, g.env, g.version, f"{g.waiting_since:%Y-%m-%d %H:%M:%S}", g.url]
                for g in gates
            ],
        )


AllOption = Annotated[
    bool, typer.Option("--all", help="every app in every environment, from the GitOps repository alone (no registry)")
]


@app.command("status")
def status(as_json: JsonOption = False, config: ConfigOption = None, every_app: AllOption = False) -> None:
    """Show each environment's version, image tag, chart digest, its verdict and how long it has soaked; with --all,
    the version of every app in every environment, verified ones marked, disagreeing clusters and clusters without
    the app shown (exit 3 after the table when a manifest is unreadable)."""
    from promo.config import load_config
    from promo.cli.table import print_table

    if every_app:
        _print_estate(load_config(config), as_json)
        return
    from promo.reports.status import environment_status

    rows = environment_status(load_config(config))
    if as_json:
        echo_json(rows)
        return
    print_table(
        ["environment", "clusters", "version", "image tag", "chart digest", "verdict", "soaked"],
        [
            [
                r.environment,
                ",".join(r.clusters),
                r.version_text(),
                r.image_tag or "-",
                r.chart_digest or "-",
                r.verdict,
                r.soaked_text(),
            ]
            for r in rows
        ],
    )


def _print_estate(config: PromoConfig, as_json: bool) -> None:
    from promo.reports.estate import read_estate

    estate = read_estate(config)
    if as_json:
        echo_json(estate.as_json())
    else:
        _print_estate_table(estate)
    estate.require_readable()  # after the whole table or JSON: a script can tell an incomplete estate


def _print_estate_table(estate: Estate) -> None:
    from promo.cli.table import print_table

    envs = estate.environments
    rows = [[app, *(where[env].text() if env in where else "-" for env in envs)] for app, where in estate.apps.items()]
    print_table(["app", *envs], rows)
    typer.echo(f"\n{len(estate.apps)} apps at {estate.commit[:12]}; ✓ verified, ✗ failed verification, - no manifest")
    missing = estate.missing()
    if missing:
        typer.echo(
            f"missing manifests: {len(missing)} (cells marked 'missing in C': the app has a manifest in another "
            "cluster of that environment, none in C)"
        )
    for app_name, env, cluster, why in estate.errors():
        typer.echo(f"error: {app_name} in {env}/{cluster}: {why}")


@app.command("sandbox")
def sandbox(
    directory: Annotated[Path, typer.Argument(help="where to lay out the local world")],
    stop: Annotated[bool, typer.Option("--stop", help="stop the sandbox's registry and stand-in")] = False,
    degrade: Annotated[
        Optional[str], typer.Option("--degrade", metavar="VERSION", help="make the stand-in report VERSION Degraded")
    ] = None,
) -> None:
    """Lay out a local world: sample app, bare git remotes, GitOps repo, promo.yaml, a registry and a stand-in
    for Argo CD and the clusters."""
    from promo.local.sandbox import create_sandbox, degrade_version, stop_sandbox

    if stop:
        typer.echo("sandbox stopped" if stop_sandbox(directory) else "sandbox was not running")
        return
    if degrade is not None:
        degrade_version(directory, degrade)
        typer.echo(f"{degrade} now comes up Degraded in {directory.resolve()}")
        return
    made = create_sandbox(directory)
    typer.echo(
        f"sandbox ready in {made.directory}: registry {made.registry_host}, stand-in for Argo CD {made.standin_url}, "
        f"config {made.config_path}"
    )
    typer.echo(f"next: export PROMO_CONFIG={made.config_path} && promo publish-dev")


@flow_command("demo")
def demo(
    directory: Annotated[Path, typer.Option("--dir", help="sandbox directory")] = Path(".promo-demo"),
) -> None:
    """Make a sandbox and move a real build from dev to test to stage, approving as the demo user."""
    from promo.flows.demo import run_demo

    run_demo(directory)


@app.command("history")
def history(
    env: Annotated[Optional[str], typer.Argument(help="only this environment")] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Every change of the app, newest first, read from the GitOps log: who approved it and whether it came up."""
    from promo.config import load_config
    from promo.gitops.history import TABLE_HEADERS, table_row
    from promo.reports.history import app_history
    from promo.cli.table import print_table

    changes = app_history(load_config(config), env)
    if as_json:
        echo_json([change.as_json() for change in changes])
    elif not changes:
        typer.echo("no changes yet")
    else:
        print_table(TABLE_HEADERS, [table_row(change) for change in changes])


@app.command("trace")
def trace(
    target: Annotated[str, typer.Argument(help="a version (X.Y.Z or X.Y.Z-rc.<sha>) or an app commit SHA")],
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Follow a version from its app commit through image, RC chart and every environment to its release."""
    from promo.config import load_config
    from promo.gitops.history import TABLE_HEADERS, table_row
    from promo.cli.table import print_table
    from promo.reports.trace import trace as follow

    found = follow(load_config(config), target)
    if as_json:
        echo_json(found.as_json())
        return
    typer.echo(f"app commit  {found.commit.sha}  {found.commit.time:%Y-%m-%d %H:%M}  {found.commit.subject}")
    typer.echo(f"image       {found.image or '-'}")
    typer.echo(f"RC chart    {found.rc}  {found.rc_digest or '-'}")
    rows = [[change.commit[:12], *table_row(change)] for change in found.reached]
    print_table(["gitops commit", *TABLE_HEADERS], rows)
    if found.version is None:
        typer.echo("release     not released yet")
        return
    release = found.release
    typer.echo(f"release     {found.version}  {found.release_digest or '-'}  tag {release.tag if release else '-'}")
    if release is not None:
        typer.echo(f"            {release.url or release.name}")
        typer.echo(release.notes)


@app.command("metrics")
def metrics(
    since: Annotated[str, typer.Option(help="the window: 30d, 12h, 90m...")] = "30d",
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """The four DORA figures for prod over the window, each with how it was computed."""
    from promo.config import duration_seconds, load_config
    from promo.reports.metrics import metrics as compute

    try:
        window = duration_seconds(since)
    except ValueError as error:
        raise InputError(str(error), "pass --since like 30d, 12h or 90m") from None
    if window == 0:
        raise InputError("the window --since 0 is empty", "pass --since like 30d, 12h or 90m")
    figures = compute(load_config(config), window)
    if as_json:
        echo_json(figures.as_json())
        return
    typer.echo(f"{figures.env}, {figures.since:%Y-%m-%d %H:%M} to {figures.until:%Y-%m-%d %H:%M} UTC")
    for figure in figures.figures:
        typer.echo(f"{figure.name}: {figure.text}\n    {figure.how}")


server_app = typer.Typer(
    help="A local Prefect server with its UI, which every promo command on this machine then uses.",
    no_args_is_help=True,
)
app.add_typer(server_app, name="server")


@server_app.command("start")
def server_start(
    port: Annotated[int, typer.Option(help="port of the API and UI (a free one if it is taken)")] = 4200,
    with_worker: Annotated[
        bool, typer.Option("--with-worker", help="also start a process worker, which runs the deployments")
    ] = False,
    pool: Annotated[str, typer.Option(help="work pool the worker polls")] = "promo",
) -> None:
    """Start the local Prefect server (or find it running) and wait until it answers."""
    from promo.local.prefect_server import start_server, start_worker

    started = start_server(port)
    server = started.process
    state = "running" if started.reused else "started"
    typer.echo(f"Prefect server {state}: UI {server.url} (pid {server.pid}, log {server.log_path})")
    if with_worker:
        worker = start_worker(server, pool)
        state = "running" if worker.reused else "started"
        typer.echo(f"process worker {state} on pool {pool} (pid {worker.process.pid}, log {worker.process.log_path})")
    typer.echo("promo commands here now use it (unless PREFECT_API_URL names another); `promo server stop` stops it")


@server_app.command("status")
def server_status() -> None:
    """Show the local Prefect server's URL, PID and health, and its worker's."""
    from promo.local.prefect_server import running_server, running_worker

    server = running_server()
    if server is None:
        typer.echo("Prefect server: not running (start it with `promo server start`)")
        return
    health = "healthy" if server.healthy() else f"not answering (read {server.log_path})"
    typer.echo(f"Prefect server: UI {server.url}, API {server.api_url}, pid {server.pid}, {health}")
    worker = running_worker()
    typer.echo(f"process worker: pool {worker.pool}, pid {worker.pid}" if worker else "process worker: not running")


@server_app.command("stop")
def server_stop() -> None:
    """Stop the local Prefect server and its worker, by the PIDs they were started with."""
    from promo.local.prefect_server import stop_server

    stopped = stop_server()
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "the local Prefect server was not running")


def _register_extra_commands() -> None:
    """Commands kept in modules of their own (each registers itself on ``app``)."""
    from promo.cli import ops  # noqa: F401


# How Prefect reports a failed run's exception without attaching it: "Finished in state Failed('Task run encountered
# an exception NotFound: ...')" (a flow run's says "exception: NotFound: ...").
_FAILED_STATE = re.compile(r"^Finished in state Failed\('(?:Task|Flow) run encountered an exception:? (\w+): ")


class _PromoErrorsOnlyOnce(logging.Filter):
    """A PromoError is an answer, not a crash: the console shows its one line (printed by ``main``), so the records of
    the failed task and flow are dropped here; the Prefect API log keeps them, with the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info:
            return not isinstance(record.exc_info[1], PromoError)
        failed = _FAILED_STATE.match(record.getMessage())
        return failed is None or failed[1] not in _promo_error_names()


def _promo_error_names() -> set[str]:
    """Every PromoError class defined so far: any exception a flow has raised has had its class defined."""
    names, pending = set(), [PromoError]
    while pending:
        error = pending.pop()
        names.add(error.__name__)
        pending.extend(error.__subclasses__())
    return names


def _quiet_console_promo_errors() -> None:
    from prefect.logging.configuration import setup_logging

    setup_logging()  # now rather than at the first flow run, so its handlers exist to be given the filter

    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in list(logging.Logger.manager.loggerDict))]
    for handler in {handler for logger in loggers for handler in logger.handlers}:
        is_console = isinstance(handler, logging.StreamHandler)
        if is_console and not any(isinstance(f, _PromoErrorsOnlyOnce) for f in handler.filters):
            handler.addFilter(_PromoErrorsOnlyOnce())


def _without_heartbeats_unless_asked() -> AbstractContextManager[object]:
    """A flow run started by a `promo` command emits no heartbeats, unless PREFECT_FLOWS_HEARTBEAT_FREQUENCY asks.

    Prefect's heartbeat thread sleeps in whole seconds and the run's end waits for it: up to 1 s more per command
    (0.7 s of a 1.3 s `promo bump-version`). Heartbeats serve zombie detection for runs whose process can vanish
    unseen, on workers; a command's run has someone watching it, and runs under deployments keep them.
    """
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    if HEARTBEAT_ENV in os.environ:
        return nullcontext()
    return temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})


def _use_local_server() -> None:
    """Before Prefect reads its settings: the local server, when one is up, instead of a temporary API per command."""
    from promo.local.prefect_server import use_running_server

    note = use_running_server()
    if note is not None:
        typer.secho(f"promo: note: {note}", err=True, fg=typer.colors.YELLOW)


def fail(error: PromoError) -> NoReturn:
    typer.secho(f"promo: error: {error}", err=True, fg=typer.colors.RED)
    sys.exit(error.exit_code)


# Commands that read git and the registry only: they need not look for the local Prefect server (a health request,
# and an HTTP client loading the CA bundle, ~0.1 s of a command meant to answer at once). `server` manages it itself.
_NO_PREFECT_SERVER = {"status", "releases", "history", "trace", "metrics", "sandbox", "server"}


def main() -> None:
    _register_extra_commands()
    if not _NO_PREFECT_SERVER.intersection(sys.argv[1:2]):
        _use_local_server()
    try:
        app()
    except PromoError as error:
        fail(error)
    except RuntimeError as error:
        from promo.local.prefect_server import ephemeral_start_failure

        explained = ephemeral_start_failure(error)
        if explained is None:
            raise
        fail(explained)
