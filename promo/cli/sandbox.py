"""`promo sandbox`: a local world to try promo in, with no cloud account."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from promo.cli.app import app


@app.command("sandbox")
def sandbox(
    directory: Annotated[Path, typer.Argument(help="where to lay out the local world")],
    stop: Annotated[bool, typer.Option("--stop", help="stop the sandbox's registry and stand-in")] = False,
    degrade: Annotated[
        Optional[str], typer.Option("--degrade", metavar="VERSION", help="make the stand-in report VERSION Degraded")
    ] = None,
) -> None:
    """Lay out a local world: sample app, bare git remotes, GitOps repo, promo.yaml, a registry, a stand-in for
    Argo CD and the clusters, and one for GitHub, through whose pull requests stage and prod are written."""
    from promo.local.sandbox import create_sandbox, degrade_version, stop_sandbox
    from promo.local.sandbox_github import RELAY_URL, TOKENS_FILE, WEBHOOK_SECRET_FILE

    if stop:
        typer.echo("sandbox stopped" if stop_sandbox(directory) else "sandbox was not running")
        return
    if degrade is not None:
        degrade_version(directory, degrade)
        typer.echo(f"{degrade} now comes up Degraded in {directory.resolve()}")
        return
    made = create_sandbox(directory, pull_requests=True)
    typer.echo(
        f"sandbox ready in {made.directory}: registry {made.registry_host}, stand-in for Argo CD {made.standin_url}, "
        f"config {made.config_path}"
    )
    tokens = made.directory / TOKENS_FILE
    users = "demo, alice, bob, carol, mallory"
    typer.echo(f"stand-in for GitHub {made.github_url}: a token per user ({users}) in {tokens}")
    typer.echo(f"promo acts as the user whose token is in $GITHUB_TOKEN: export demo's ({tokens}); stage and prod "
               "are written through pull requests, approved by a review of alice, bob or carol "
               "(promo approve --env stage --github-token, their token on stdin)")  # fmt: skip
    secret = made.directory / WEBHOOK_SECRET_FILE
    typer.echo(f"its webhook delivers reviews and closes to {RELAY_URL}: `promo relay-github-webhooks "
               f"--secret-file {secret}` relays them to Prefect, so a decision resumes a suspended run in seconds")
    typer.echo(f"next: export PROMO_CONFIG={made.config_path} && promo publish-dev")
