"""Hotfix branches on the app repository."""

from __future__ import annotations

from prefect import task

from promo.app_repo import chart_yaml_path, read_chart_yaml
from promo.charts import set_chart_yaml_version
from promo.clients import app_mirror
from promo.config import PromoConfig
from promo.hotfix import HotfixPlan, check_hotfix
from tasks.retry import TRANSIENT_RETRIES


@task(name="check-hotfix", **TRANSIENT_RETRIES)
def check_hotfix_is_new(config: PromoConfig, plan: HotfixPlan) -> str:
    """The commit of the release tag, once the hotfix collides with no tag, branch or main's next release."""
    mirror = app_mirror(config)
    mirror.fetch()
    main_version = str(read_chart_yaml(mirror, config.app_repo.branch, config.chart.path)["version"])
    return check_hotfix(plan, mirror.tags(), mirror.branches(), main_version)


@task(name="create-hotfix-branch", **TRANSIENT_RETRIES)
def create_hotfix_branch(config: PromoConfig, plan: HotfixPlan, release_commit: str) -> str:
    """``hotfix-X-Y-Z`` from the release commit, with one commit setting Chart.yaml's version; pushed."""
    mirror = app_mirror(config)
    path = chart_yaml_path(config.chart.path)
    chart_yaml = (mirror.read_file(release_commit, path) or "").encode()
    commit = mirror.commit_files(
        release_commit,
        {path: set_chart_yaml_version(chart_yaml, plan.version, path).decode()},
        f"chore: start hotfix {plan.version} from {plan.tag}\n",
    )
    mirror.create_branch(plan.branch, commit)
    return commit
