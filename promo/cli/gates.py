"""Commands on the gates: list the waiting ones, approve or reject one. They ask the Prefect API without importing
Prefect."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from promo.cli.app import ConfigOption, JsonOption, OverrideOption, app, current_user, echo_json
from promo.errors import InputError


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
