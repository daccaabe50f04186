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
    from promo.release.gates import PrefectApi, decide
    from promo.release.approvals import Decision
    from promo.config import load_config

    app_name = None
    if env is not None:
        settings = load_config(config)
        env, app_name = settings.environment(env).name, settings.app
    api = PrefectApi.from_environment()
    gate = _one_gate(api, run_id, env, app_name)
    approver = as_name or current_user()
    decide(gate, Decision(not reject, approver, comment, via="cli", override_reason=override_reason or ""), api=api)
    verdict = "rejected" if reject else "approved"
    typer.echo(f"{verdict} {gate.app} {gate.version} into {gate.env} (flow run {gate.flow_run_id} on {api.url})")


def _one_gate(api, run_id: str | None, env: str | None, app_name: str | None):  # noqa: ANN001 (Prefect-free import)
    from promo.release.gates import waiting_gates

    if (run_id is None) == (env is None):
        raise InputError("name exactly one gate", "pass a flow run id or --env ENV (see `promo pending`)")
    if env:
        gates = waiting_gates(app=app_name, env=env, api=api)
    else:
        gates = [gate for gate in waiting_gates(api=api) if str(gate.flow_run_id) == run_id]
    if not gates:
        what = f"into {env}" if env else f"with flow run id {run_id}"
        raise InputError(
            f"no gate is waiting {what} on the Prefect server at {api.url}",
            "run `promo pending` to see the waiting gates (PREFECT_API_URL names the server)",
        )
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
    from promo.release.gates import PrefectApi, waiting_gates
    from promo.config import load_config
    from promo.cli.table import print_table

    api = PrefectApi.from_environment()
    gates = waiting_gates(app=load_config(config).app if config else None, api=api)
    if as_json:
        echo_json(gates)
        return
    if not gates:
        typer.echo(f"no gates waiting on the Prefect server at {api.url}")
        return
    typer.echo(f"gates waiting on the Prefect server at {api.url}:")
    print_table(
        ["flow run", "flow", "app", "env", "version", "waiting since", "url"],
        [
            [str(g.flow_run_id), g.flow_name, g.app, g.env, g.version, f"{g.waiting_since:%Y-%m-%d %H:%M:%S}", g.url]
            for g in gates
        ],
    )
