"""Operator controls: freeze and unfreeze an environment, reject and unreject a version. Each is one signed record in
the GitOps repository (promo.gitops.controls), which every machine reads at planning; no flow runs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Optional

import typer

from promo.cli.app import ConfigOption, JsonOption, app, current_user, echo_json
from promo.errors import InputError

AsOption = Annotated[
    Optional[str], typer.Option("--as", help="who does it (default: $PROMO_USER, then the current user)")
]
ReasonOption = Annotated[str, typer.Option("--reason", help="why; recorded, and shown where it refuses")]


@app.command("freeze")
def freeze(
    env: Annotated[str, typer.Argument(help="the environment to freeze")],
    reason: ReasonOption,
    until: Annotated[
        Optional[str],
        typer.Option(help="when the freeze ends by itself: ISO 8601 (UTC when no offset) or a duration (90m, 2h, 1d)"),
    ] = None,
    as_name: AsOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Freeze ENV: no publish, promotion or release into it gets past planning (a rollback still does; an approver
    may pass it at the gate with --override-reason), until `promo unfreeze ENV` or --until."""
    from promo.gitops import controls

    settings, mirror, key = _open(config)
    name = settings.environment(env).name
    now = datetime.now(UTC)
    ends = controls.parse_until(until, now) if until else None
    entry = controls.record_control(
        mirror, controls.FREEZES, name, controls.FREEZE, key, by=as_name or current_user(), reason=reason, until=ends
    )
    _print(entry, as_json, f"froze {name}: {controls.current_freezes([entry], now)[name].line()}")


@app.command("unfreeze")
def unfreeze(
    env: Annotated[str, typer.Argument(help="the frozen environment")],
    as_name: AsOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Lift the freeze of ENV."""
    from promo.gitops import controls

    settings, mirror, key = _open(config)
    name = settings.environment(env).name
    if controls.read_freeze(mirror, name, datetime.now(UTC)) is None:
        raise InputError(f"{name} is not frozen: there is nothing to lift", "see `promo status`")
    by = as_name or current_user()
    entry = controls.record_control(mirror, controls.FREEZES, name, controls.UNFREEZE, key, by=by)
    _print(entry, as_json, f"unfroze {name} (by {entry.by})")


@app.command("reject")
def reject(
    version: Annotated[str, typer.Argument(help="the version (a build 0.2.0-rc.x or a release 0.2.0) to reject")],
    reason: ReasonOption,
    as_name: AsOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Reject VERSION of the app: it is never promoted, released or rolled back to again, until `promo unreject`."""
    _reject(version, reason, as_name, as_json, config, undo=False)


@app.command("unreject")
def unreject(
    version: Annotated[str, typer.Argument(help="the rejected version")],
    reason: ReasonOption,
    as_name: AsOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Take back the rejection of VERSION: it may move again."""
    _reject(version, reason, as_name, as_json, config, undo=True)


def _reject(version: str, reason: str, as_name: str | None, as_json: bool, config: str | None, *, undo: bool) -> None:
    from promo.gitops import controls
    from promo.versions import parse_version

    parse_version(version, what="VERSION")
    settings, mirror, key = _open(config)
    rejected = controls.read_rejections(mirror, settings.app).get(version)
    if undo and rejected is None:
        raise InputError(f"{settings.app} {version} is not rejected: there is nothing to take back", None)
    if not undo and rejected is not None:
        raise InputError(f"{settings.app} {rejected.line()} already", f"`promo unreject {version}` takes it back")
    action = controls.UNREJECT if undo else controls.REJECT
    entry = controls.record_control(
        mirror, controls.REJECTIONS, settings.app, action, key, by=as_name or current_user(), reason=reason,
        version=version,
    )  # fmt: skip
    _print(entry, as_json, f"{action}ed {settings.app} {version} (by {entry.by}): {reason}")


def _open(config_path: str | None):  # noqa: ANN202 (the types import git: kept inside the command)
    from promo.clients import gitops_repo
    from promo.config import load_config
    from promo.signing_key import record_signing_key

    settings = load_config(config_path)
    key = record_signing_key(settings.records.signing_key_file)
    return settings, gitops_repo(settings).mirror, key


def _print(entry: object, as_json: bool, line: str) -> None:
    if as_json:
        echo_json(entry)
    else:
        typer.echo(line)
