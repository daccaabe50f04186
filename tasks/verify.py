"""Verification of what a GitOps commit deployed, recorded as a verdict in the GitOps remote."""

from __future__ import annotations

from prefect import task

from promo.clients import gitops_repo
from promo.config import PromoConfig
from promo.gitops.verdicts import Verdict, read_verdicts, record_verdict
from promo.verify.engine import verify_deployment
from promo.tasks.retry import TRANSIENT_RETRIES


@task(name="verify-environment", **TRANSIENT_RETRIES)
def verify_environment(
    config: PromoConfig, env: str, version: str, gitops_commit: str, *, flow_run: str | None = None
) -> Verdict | None:
    """The verdict that stands for ``gitops_commit`` in ``env``, or None when ``env`` is not verified.

    A commit that has a verdict already keeps it, unchecked: a re-run after a crash does not verify twice, and a
    verdict two runs raced to write is the first one (``record_verdict`` returns it).
    """
    if config.environment(env).verify is None:
        return None
    mirror = gitops_repo(config).mirror
    mirror.fetch()
    existing = read_verdicts(mirror, config.app, env).get(gitops_commit)
    if existing is not None:
        return existing
    return record_verdict(mirror, verify_deployment(config, env, version, gitops_commit, flow_run=flow_run))
