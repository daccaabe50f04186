"""The GitOps repository: what each environment runs, and the commits that change it."""

from __future__ import annotations

from prefect import task

from promo.clients import gitops_repo
from promo.config import PromoConfig
from promo.gitops import Plan, SetVersionResult, Trailers
from promo.versions import parse_version
from tasks.retry import TRANSIENT_RETRIES


@task(name="read-environment-version", **TRANSIENT_RETRIES)
def read_environment_version(config: PromoConfig, env: str) -> str:
    """The chart version ``env`` runs; a ``targetRevision`` such as ``main`` is no chart version and is refused."""
    version = gitops_repo(config).environment_version(config.app, env, config.environment(env).clusters)
    parse_version(version, what=f"the targetRevision of {config.app} in {env}")
    return version


@task(name="plan-environment-version", **TRANSIENT_RETRIES)
def plan_environment_version(config: PromoConfig, env: str, version: str) -> Plan:
    return gitops_repo(config).plan(config.app, env, config.environment(env).clusters, version)


@task(name="write-environment-version", **TRANSIENT_RETRIES)
def write_environment_version(
    config: PromoConfig, env: str, version: str, *, subject: str, trailers: Trailers
) -> SetVersionResult:
    """One commit setting every cluster of ``env``; a rejected push is re-applied on the new head inside the call."""
    return gitops_repo(config).set_version(
        config.app, env, config.environment(env).clusters, version, subject=subject, trailers=trailers
    )
