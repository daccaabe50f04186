"""Commands for running promo on a Prefect server: setup, notify-push, relay-github-webhooks. They register
themselves on the app of promo.cli.app."""

from __future__ import annotations

import logging
from pathlib import Path
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



@app.command("relay-github-webhooks")
def relay_github_webhooks(
    secret_file: Annotated[
        Optional[Path],
        typer.Option(help="file holding the GitHub webhook's secret (default: $PROMO_GITHUB_WEBHOOK_SECRET)"),
    ] = None,
    host: Annotated[str, typer.Option(help="address to listen on (put TLS in front of it: a proxy or an ingress)")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="port to listen on")] = 8790,
) -> None:
    """Relay GitHub webhook deliveries to the Prefect server as events: a review or a close of a promotion's pull
    request starts watch-pull-requests at once. For the open-source server; on Prefect Cloud use a Cloud webhook."""
    from promo.deployments.github_relay import Relay, prefect_sender, read_secret, relay_server
    from promo.flows.events import PULL_REQUEST_DECISION_EVENTS
    from promo.release.gates import PrefectApi

    secret = read_secret(secret_file)  # before anything listens: no secret, no server
    url = _require_server()
    server = relay_server(Relay(secret, prefect_sender(PrefectApi.from_environment())), host, port)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    typer.echo(
        f"relaying GitHub webhooks at http://{host}:{server.server_port}/ to {url} as "
        f"{', '.join(PULL_REQUEST_DECISION_EVENTS)}; Ctrl-C stops"
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
