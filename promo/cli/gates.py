"""Commands on the gates: list the waiting ones, approve or reject one. They ask the Prefect API without importing
Prefect."""

from __future__ import annotations

import os
import sys
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
    github_token: Annotated[
        bool,
        typer.Option("--github-token", help="a pull-request gate: read the reviewer's GitHub token from stdin "
                     "(default: $GITHUB_TOKEN); the review is theirs"),
    ] = False,  # fmt: skip
    config: ConfigOption = None,
) -> None:
    """Approve (or --reject) a promotion waiting at its gate: by flow run id, or by environment (with promo.yaml).
    A gate that is a pull request's review (approval: pull-request) is decided by a GitHub review, submitted as the
    user whose token is given: GitHub, not --as, says who approved."""
    from promo.release.gates import PrefectApi, decide
    from promo.release.approvals import Decision
    from promo.config import load_config

    app_name = None
    if env is not None:
        settings = load_config(config)
        env, app_name = settings.environment(env).name, settings.app
        if settings.environment(env).gate_kind == "pull-request":
            _review(settings, env, reject, comment, sys.stdin.readline() if github_token else None)
            return
    api = PrefectApi.from_environment()
    gate = _one_gate(api, run_id, env, app_name)
    approver = as_name or current_user()
    decide(gate, Decision(not reject, approver, comment, via="cli", override_reason=override_reason or ""), api=api)
    verdict = "rejected" if reject else "approved"
    typer.echo(f"{verdict} {gate.app} {gate.version} into {gate.env} (flow run {gate.flow_run_id} on {api.url})")


def _review(settings, env: str, reject: bool, comment: str, token: str | None) -> None:  # noqa: ANN001
    """Decide the pull request waiting to move ``settings.app`` into ``env`` with a review as ``token``'s user."""
    from promo.clients import gitops_pull_requests
    from promo.forges.github import EnvToken, GivenToken
    from promo.release.pull_gate import review_gate, waiting_pull_requests

    pulls = gitops_pull_requests(settings, GivenToken(token) if token is not None else EnvToken())
    gates = waiting_pull_requests(pulls, settings.app, [env], settings.gitops.branch)
    if len(gates) != 1:
        raise InputError(
            f"{len(gates) or 'no'} pull requests are waiting to move {settings.app} into {env}",
            "run `promo pending` and review the one you mean on GitHub",
        )
    login, review = review_gate(pulls, gates[0], approve=not reject, comment=comment)
    verdict = "rejected" if reject else "approved"
    gate = gates[0]
    typer.echo(f"{verdict} {gate.app} {gate.version} into {env} as {login} "
               f"(GitHub review {review.id} of {gate.pull_request['html_url']})")  # fmt: skip


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


def _waiting_reviews(settings):  # noqa: ANN001, ANN202 (a PromoConfig; imported only here)
    """The promotions waiting for a review of their pull request (approval: pull-request), asked of GitHub."""
    from promo.clients import gitops_pull_requests
    from promo.release.pull_gate import waiting_pull_requests

    envs = [env.name for env in settings.environments if env.gate_kind == "pull-request"]
    if not envs:
        return []
    return waiting_pull_requests(gitops_pull_requests(settings), settings.app, envs, settings.gitops.branch)


@app.command("pending")
def pending(
    as_json: JsonOption = False,
    config: Annotated[
        Optional[str],
        typer.Option("--config", "-c", help="only the gates of the app in this promo.yaml (default: all; the pull "
                     "requests waiting for a review are those of this app, else of $PROMO_CONFIG's)"),
    ] = None,  # fmt: skip
) -> None:
    """List the gates waiting for a decision: on the Prefect server, and the pull requests waiting for a review."""
    from promo.release.gates import PrefectApi, waiting_gates
    from promo.config import CONFIG_ENV_VAR, load_config
    from promo.cli.table import print_table

    api = PrefectApi.from_environment()
    settings = load_config(config) if config else None
    gates = waiting_gates(app=settings.app if settings else None, api=api)
    # Only GitHub knows a pull request's gate, asked for one app: --config's, else the one every command uses.
    reviewed = settings or (load_config() if os.environ.get(CONFIG_ENV_VAR) else None)
    reviews = _waiting_reviews(reviewed) if reviewed else []
    if as_json:
        echo_json([*gates, *reviews])
        return
    for review in reviews:
        typer.echo(f"{review.app} {review.version} into {review.env}: waiting for a review of "
                   f"{review.pull_request['html_url']}")  # fmt: skip
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
