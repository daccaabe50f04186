"""The `promo` command: thin over the flows. It parses, starts a flow or a query, and prints.

Every PromoError, and Prefect's failure to start its temporary API, becomes one line on stderr and an exit code; nothing
else is caught. The commands live in one module per group (promo.cli.flows, gates, reports, sandbox, server, ops), each
registering itself on the app of promo.cli.app; importing them here is what puts them on the `promo` command.
"""

from __future__ import annotations

import sys

import typer

from promo.cli import controls, flows, gates, ops, reports, sandbox, server  # noqa: F401 (each registers its commands on app)
from promo.cli.app import app, fail
from promo.errors import PromoError

# The order `promo --help` lists the commands in: the pipeline first, as when one module held them all, rather than
# the order the modules above register them. A command missing here is listed last.
HELP_ORDER = (
    "publish-dev",
    "promote-test",
    "promote-stage",
    "release-prod",
    "rollback",
    "hotfix",
    "bump-version",
    "releases",
    "approve",
    "pending",
    "freeze",
    "unfreeze",
    "reject",
    "unreject",
    "status",
    "sandbox",
    "demo",
    "history",
    "trace",
    "metrics",
    "setup",
    "notify-push",
    "relay-github-webhooks",
)
app.registered_commands.sort(
    key=lambda command: HELP_ORDER.index(command.name) if command.name in HELP_ORDER else len(HELP_ORDER)
)


def _use_local_server() -> None:
    """Before Prefect reads its settings: the local server, when one is up, instead of a temporary API per command."""
    from promo.local.prefect_server import use_running_server

    note = use_running_server()
    if note is not None:
        typer.secho(f"promo: note: {note}", err=True, fg=typer.colors.YELLOW)


# Commands that read git and the registry only: they need not look for the local Prefect server (a health request,
# and an HTTP client loading the CA bundle, ~0.1 s of a command meant to answer at once). `server` manages it itself.
_NO_PREFECT_SERVER = {"status", "releases", "history", "trace", "metrics", "sandbox", "server"}


def main() -> None:
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
