"""Commands that report: releases, status (of one app, or of every app with --all), history, trace, metrics. They read
git and the registry only, and import no Prefect."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

from promo.cli.app import ConfigOption, JsonOption, app, echo_json
from promo.errors import InputError

if TYPE_CHECKING:
    from promo.config import PromoConfig
    from promo.reports.estate import Estate


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
        typer.echo(f"notes: `promo trace {found[0].tag.removeprefix('v')}` (or --json for every release's)")


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
    for row in rows:
        if row.window_closed:
            typer.echo(f"{row.environment}: {row.window_closed}")
        notes = [f"frozen: {row.frozen}"] if row.frozen else []
        notes += [f"rejected: {row.rejected}"] if row.rejected else []
        for line in [*notes, *(f"ignored, {line}" for line in row.ignored)]:
            typer.echo(f"{row.environment}: {line}")


def _print_estate(config: PromoConfig, as_json: bool) -> None:
    from promo.reports.controls import operator_controls
    from promo.reports.estate import read_estate

    estate = read_estate(config)
    controls = operator_controls(config)
    if as_json:
        echo_json({**estate.as_json(), "freezes": controls.as_json()["freezes"]})
    else:
        _print_estate_table(estate)
        for line in controls.notes(estate.environments):
            typer.echo(line)
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


@app.command("history")
def history(
    env: Annotated[Optional[str], typer.Argument(help="only this environment")] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Every change of the app, newest first, read from the GitOps log: who approved it and whether it came up."""
    from promo.config import load_config
    from promo.gitops.history import TABLE_HEADERS, table_row
    from promo.reports.controls import operator_controls
    from promo.reports.history import app_history
    from promo.cli.table import print_table

    settings = load_config(config)
    changes = app_history(settings, env)
    controls = operator_controls(settings)
    if as_json:
        marked = [{**change.as_json(), "rejected": controls.rejected(change.version)} for change in changes]
        echo_json(marked)
        return
    if not changes:
        typer.echo("no changes yet")
    else:
        print_table(TABLE_HEADERS, [table_row(change) for change in changes])
    envs = [env] if env else settings.environment_names
    for line in controls.notes(envs, [change.version for change in changes if change.version]):
        typer.echo(line)


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
    from promo.reports.controls import operator_controls
    from promo.reports.trace import trace as follow

    settings = load_config(config)
    found = follow(settings, target)
    controls = operator_controls(settings)
    rejected = [line for line in (controls.rejected(found.rc), controls.rejected(found.version)) if line]
    if as_json:
        echo_json({**found.as_json(), "rejected": rejected})
        return
    for line in rejected:
        typer.echo(f"REJECTED    {line}")
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
        for line in release.notes.strip().splitlines():  # under the release, as the other lines are
            typer.echo(f"            {line}".rstrip())


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
