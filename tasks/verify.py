"""Verification of what a GitOps commit deployed, recorded as a signed verdict in the GitOps remote."""

from __future__ import annotations

from datetime import datetime, timezone

from prefect import task

from promo.clients import argocd_client, gitops_repo, pushed_chart_digest
from promo.config import PromoConfig
from promo.gitops.verdicts import Verdict, deployed_verdict, read_verdicts, record_verdict, require_listed
from promo.signing_key import record_signing_key
from promo.verify.engine import verify_deployment
from promo.tasks.retry import TRANSIENT_RETRIES


@task(name="verify-environment", **TRANSIENT_RETRIES)
def verify_environment(
    config: PromoConfig, env: str, version: str, gitops_commit: str, *, flow_run: str | None = None
) -> Verdict | None:
    """The verdict that stands for ``gitops_commit`` (a commit promo wrote) in ``env``; None when ``env`` is not
    verified, after recording that promo deployed it (``deployed_verdict``): the signed time its soak starts from, as
    a committer date is whatever the committer's clock, or wish, said.

    A commit that has a record of promo's already keeps it, unchecked: a re-run after a crash does not verify twice,
    and a verdict two runs raced to write is the first one (``record_verdict`` returns it). A record promo cannot
    prove it wrote is no verdict: the commit is verified and promo's own record written beside it.
    """
    key = record_signing_key(config.records.signing_key_file)
    mirror = gitops_repo(config).mirror
    if config.environment(env).verify is None:
        landed = datetime.now(timezone.utc)  # just after the write landed; a re-run keeps the first record
        deployed = deployed_verdict(config.app, env, version, gitops_commit, at=landed, flow_run=flow_run)
        record_verdict(mirror, deployed, key)  # fetches, and refuses a key the branch does not list, itself
        return None
    mirror.fetch()
    require_listed(mirror, key)  # before minutes of checks: a run whose verdict nobody would believe says so first
    existing = read_verdicts(mirror, config.app, env).get(gitops_commit)
    if existing is not None and existing.trusted:
        return existing
    return record_verdict(mirror, verify_with_clients(config, env, version, gitops_commit, flow_run=flow_run), key)


def verify_with_clients(
    config: PromoConfig, env: str, version: str, gitops_commit: str, *, flow_run: str | None = None
) -> Verdict:
    """``verify_deployment`` with the clients promo.yaml names for ``env``: its Argo CD, and the chart repository for
    a native OCI source's digest."""
    settings = config.environment(env).verify
    argocd = argocd_client(settings.argocd) if settings is not None and settings.argocd is not None else None
    try:
        return verify_deployment(
            config, env, version, gitops_commit, flow_run=flow_run, argocd=argocd,
            pushed_digest=lambda: pushed_chart_digest(config, version),
        )  # fmt: skip
    finally:
        if argocd is not None:
            argocd.close()
