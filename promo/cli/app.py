"""The Typer app every command module registers on, and what they share: the common options, how a command that
runs a flow is set up, JSON output and the one-line failure.

Importing this module imports no Prefect: a command that runs no flow must answer in seconds.
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
from typing import Annotated, Any, NoReturn, Optional, TypeVar

import typer

from promo.errors import PromoError

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
    only when such a command runs, so every other command answers without importing Prefect (seconds).

    Its stdout is line-buffered: what it prints goes out between Prefect's log lines (stderr, unbuffered) in the
    order it happened, also when both are piped to one file (`make demo | tee demo.log`)."""

    def register(command: Command) -> Command:
        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> None:
            reconfigure = getattr(sys.stdout, "reconfigure", None)
            if reconfigure is not None:
                reconfigure(line_buffering=True)
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


def fail(error: PromoError) -> NoReturn:
    typer.secho(f"promo: error: {error}", err=True, fg=typer.colors.RED)
    sys.exit(error.exit_code)


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
