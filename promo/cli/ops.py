"""Commands for running promo on a Prefect server: setup, notify-push. They register themselves on the app of
promo.cli.app."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from promo.cli.app import ConfigOption, app
from promo.errors import InputError, ToolError


def _require_server() -> str:
    """These commands only make sense against a long-lived server, never the ephemeral one a CLI would start."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        raise InputError(
            "no Prefect server is configured (PREFECT_API_URL is not set)",
            "export PREFECT_API_URL=http://HOST:4200/api (or `prefect profile use` a profile that sets it)",
        )
    with get_client(sync_client=True) as client:
        failure = client.api_healthcheck()
    if failure is not None:
        raise ToolError(f"the Prefect API at {url} does not answer: {failure}", "start the server or fix PREFECT_API_URL")
    return url


@app.command("setup")
def setup(
    config: ConfigOption = None,
    pool: Annotated[str, typer.Option(help="work pool the deployments run on")] = "promo",
    pool_type: Annotated[
        str, typer.Option(help="type of the pool when it has to be created: process, or kubernetes (Jobs run promo's image)")
    ] = "process",
    source: Annotated[
        Optional[str], typer.Option(help="load flows from this directory or git URL at run time (default: installed code)")
    ] = None,
) -> None:
    """Register promo on the Prefect server: work pool, the app's config, limits, secret placeholders, deployments.

    promo.yaml is validated and stored on the server (block promo-config/<app>); the deployments name the app, so any
    worker runs them without the file. Idempotent: what exists is kept (limits, secrets and the pool are never
    changed), the stored config and the deployments are updated.
    """
    try:
        from promo.deployments.deploy import setup_all
    except ModuleNotFoundError as error:
        if error.name != "deployments":
            raise
        raise ToolError(
            "the deployments package is not installed with promo",
            "reinstall promo (pip install -e .) from a checkout whose pyproject.toml includes deployments*",
        ) from None

    from promo.config import load_config

    load_config(config)  # bad input first: nothing is registered for a promo.yaml that does not validate
    url = _require_server()
    typer.echo(f"Prefect API: {url}")
    for outcome in setup_all(config, pool, pool_type=pool_type, source=source):
        typer.echo(outcome.line())


@app.command("notify-push")
def notify_push(
    sha: Annotated[str, typer.Option(help="the full commit SHA that was pushed")],
    branch: Annotated[str, typer.Option(help="the branch it was pushed to")],
    config: ConfigOption = None,
) -> None:
    """Tell the Prefect server a commit was pushed (event git.push): publish-dev runs for main and hotfix-* branches."""
    from promo.flows.events import branch_publishes, emit_push_event
    from promo.config import load_config
    from promo.gitops.mirror import check_branch_name
    from promo.versions import short_sha

    check_branch_name(branch)
    short_sha(sha)
    sha = sha.strip().lower()
    settings = load_config(config)
    _require_server()
    event = emit_push_event(settings.app, sha, branch)
    if event is None:
        raise ToolError("Prefect did not send the event (events are disabled here)", "check PREFECT_API_URL and PREFECT_API_KEY")
    effect = (
        f"publish-dev/{settings.app} will run"
        if branch_publishes(branch, settings.app_repo.branch)
        else f"no publish: only {settings.app_repo.branch} and hotfix-* branches publish"
    )
    typer.echo(f"sent git.push {settings.app} {sha[:12]} on {branch} (event {event.id}): {effect}")

