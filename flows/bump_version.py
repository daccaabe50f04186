"""bump-version: move main's chart version by one part; release-prod already bumps the patch after a release."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from promo.flows.stored_config import run_config
from promo.gitops.app_repo import ChartVersionChange
from promo.versions import BumpPart, check_bump_part
from promo.tasks.app_repo import bump_chart_version


@flow(name="bump-version")
def bump_version(
    part: BumpPart = "patch", config_path: str | None = None, app: str | None = None
) -> ChartVersionChange:
    check_bump_part(part)
    config = run_config(config_path, app)
    change = bump_chart_version(config, part)
    create_markdown_artifact(
        key=f"bump-{config.app}",
        markdown=f"Chart version of **{config.app}** on `{config.app_repo.branch}`: `{change.before}` → `{change.after}` "
        f"(commit `{change.commit}`)",
        description=f"bump {part}",
    )
    return change
