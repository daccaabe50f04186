"""Commands that run a flow: publish, promote, release, roll back, hotfix, bump the chart version, the demo.

Each imports its flow inside the command, so the commands that run none never import Prefect.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Optional

import typer

from promo.cli.app import ConfigOption, OverrideOption, YesOption, current_user, flow_command
from promo.errors import InputError


@flow_command("publish-dev")
def publish_dev(
    sha: Annotated[Optional[str], typer.Option(help="commit to build (default: a new empty build commit)")] = None,
    branch: Annotated[
        Optional[str], typer.Option(help="branch the commit is on (default: app_repo.branch in promo.yaml)")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Build and push the image and the RC chart, then deploy it to the first environment."""
    from promo.flows.publish_dev import publish_dev as flow

    published = flow(sha=sha, branch=branch, config_path=config)
    typer.echo(published.summary())


def _approving_if(yes: bool, config: str | None, target: str | None, override_reason: str | None = None):
    """``--yes``: the person running the command approves its gate into ``target`` (None: the last environment, where
    a release goes), in this process only. A gate that is a GitHub review (approval: pull-request) is passed by an
    approver's review alone, so --yes is refused there in one line, before any work, rather than ignored while the run
    waits for the review."""
    from promo.config import load_config
    from promo.flows.gate import approving_as

    if override_reason is not None and not yes:
        raise InputError("--override-reason goes with --yes", "add --yes, or give the reason at the gate's form")
    if not yes:
        return nullcontext()
    settings = load_config(config)
    env = settings.environment(target) if target is not None else settings.environments[-1]
    if env.gate_kind == "pull-request":
        raise InputError(
            f"--yes cannot pass the gate into {env.name}: it is an approving review of the pull request promo opens",
            f"run it without --yes, then review the pull request (`promo pending` links it) or run "
            f"`promo approve --env {env.name} --github-token` with the reviewer's token on stdin",
        )
    return approving_as(current_user(), override_reason)


def _promote(target: str, yes: bool, override_reason: str | None, config: str | None) -> None:
    from promo.flows.promote import FLOWS

    with _approving_if(yes, config, target, override_reason):
        promotion = FLOWS[target](config_path=config)
    typer.echo(promotion.summary())


@flow_command("promote-test")
def promote_test(yes: YesOption = False, override_reason: OverrideOption = None, config: ConfigOption = None) -> None:
    """Promote the version running in dev to test, after approval."""
    _promote("test", yes, override_reason, config)


@flow_command("promote-stage")
def promote_stage(yes: YesOption = False, override_reason: OverrideOption = None, config: ConfigOption = None) -> None:
    """Promote the version running in test to stage, after approval."""
    _promote("stage", yes, override_reason, config)


@flow_command("release-prod")
def release_prod(yes: YesOption = False, override_reason: OverrideOption = None, config: ConfigOption = None) -> None:
    """Release the RC running in stage to prod as X.Y.Z, after approval; safe to run again after any failure."""
    from promo.flows.release_prod import release_prod as flow

    with _approving_if(yes, config, None, override_reason):
        released = flow(config_path=config)
    typer.echo(released.summary())


@flow_command("rollback")
def rollback(
    env: Annotated[str, typer.Argument(help="the environment to roll back")],
    to: Annotated[
        Optional[str], typer.Option(help="the version to put back (default: the last one verified in ENV)")
    ] = None,
    yes: YesOption = False,
    config: ConfigOption = None,
) -> None:
    """Put back the last version verified in ENV (or --to VERSION, verified there), after approval, and verify it."""
    from promo.flows.rollback import rollback as flow

    with _approving_if(yes, config, env):
        rolled_back = flow(env=env, to=to, config_path=config)
    typer.echo(rolled_back.summary())


@flow_command("hotfix")
def hotfix(
    tag: Annotated[str, typer.Argument(help="the release to fix, vX.Y.Z")],
    config: ConfigOption = None,
) -> None:
    """Branch hotfix-X-Y-(Z+1) from a release tag, set its chart version, and open a draft pull request."""
    from promo.flows.hotfix import hotfix as flow
    from promo.versions import parse_release_tag

    parse_release_tag(tag)
    typer.echo(flow(tag=tag, config_path=config).summary())


@flow_command("bump-version")
def bump_version(
    part: Annotated[str, typer.Argument(help="patch, minor or major")],
    config: ConfigOption = None,
) -> None:
    """Bump the chart version on main by one part."""
    from promo.flows.bump_version import bump_version as flow
    from promo.versions import check_bump_part

    change = flow(part=check_bump_part(part), config_path=config)
    typer.echo(f"chart version {change.before} -> {change.after} (commit {change.commit})")


@flow_command("demo")
def demo(
    directory: Annotated[Path, typer.Option("--dir", help="sandbox directory")] = Path(".promo-demo"),
) -> None:
    """Make a sandbox and move a real build from dev to test (approved as the demo user) and through pull requests
    to stage and prod (approved by alice's review on the sandbox's GitHub stand-in)."""
    from promo.flows.demo import run_demo

    run_demo(directory)
