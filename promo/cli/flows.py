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


def _approving_if(yes: bool, override_reason: str | None = None):
    """``--yes``: the person running the command approves its gate, in this process only."""

    from promo.flows.gate import approving_as

    if override_reason is not None and not yes:
        raise InputError("--override-reason goes with --yes", "add --yes, or give the reason at the gate's form")
    return approving_as(current_user(), override_reason) if yes else nullcontext()


def _promote(target: str, yes: bool, override_reason: str | None, config: str | None) -> None:
    from promo.flows.promote import FLOWS

    with _approving_if(yes, override_reason):
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

    with _approving_if(yes, override_reason):
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

    with _approving_if(yes):
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
    pull_requests: Annotated[
        bool, typer.Option("--pull-requests", help="stage and prod through pull requests, approved by a review")
    ] = False,
) -> None:
    """Make a sandbox and move a real build from dev to test to stage, approving as the demo user (with
    --pull-requests, stage and prod are approved by alice's review of their pull requests on the GitHub stand-in)."""
    from promo.flows.demo import run_demo

    run_demo(directory, pull_requests=pull_requests)
