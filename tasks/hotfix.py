"""Hotfix branches on the app repository."""

from __future__ import annotations

from prefect import task

from promo.gitops.app_repo import chart_yaml_path, read_chart_yaml
from promo.registry.charts import set_chart_yaml_version
from promo.clients import app_mirror, forge
from promo.config import PromoConfig
from promo.gitops.mirror import Mirror
from promo.release.hotfix import HotfixPlan, check_hotfix
from promo.tasks.retry import TRANSIENT_RETRIES


@task(name="check-hotfix", **TRANSIENT_RETRIES)
def check_hotfix_is_new(config: PromoConfig, plan: HotfixPlan) -> str:
    """The commit of the release tag, once the hotfix collides with no tag, branch or main's next release."""
    mirror = app_mirror(config)
    mirror.fetch()
    forge(config, mirror).list_pull_requests()  # the forge answers (token, permissions) before anything is pushed
    main_version = str(read_chart_yaml(mirror, config.app_repo.branch, config.chart.path)["version"])
    tags, branches = mirror.tags(), mirror.branches()
    return check_hotfix(plan, tags, branches, main_version, started_by_promo=_started_by_promo(mirror, plan, tags))


def _started_by_promo(mirror: Mirror, plan: HotfixPlan, tags: dict[str, str]) -> bool:
    if plan.branch not in mirror.branches() or plan.tag not in tags:
        return False
    return [entry.subject for entry in mirror.log(tags[plan.tag], plan.branch)] == [plan.start_subject]


@task(name="create-hotfix-branch", **TRANSIENT_RETRIES)
def create_hotfix_branch(config: PromoConfig, plan: HotfixPlan, release_commit: str) -> str:
    """``hotfix-X-Y-Z`` from the release commit, with one commit setting Chart.yaml's version; pushed."""
    mirror = app_mirror(config)
    existing = mirror.branches().get(plan.branch)
    if existing is not None:  # started by an earlier run of this hotfix (checked in check_hotfix_is_new)
        return existing
    path = chart_yaml_path(config.chart.path)
    chart_yaml = (mirror.read_file(release_commit, path) or "").encode()
    commit = mirror.commit_files(
        release_commit,
        {path: set_chart_yaml_version(chart_yaml, plan.version, path).decode()},
        f"{plan.start_subject}\n",
    )
    mirror.create_branch(plan.branch, commit)
    return commit
