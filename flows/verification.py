"""Verification in the flows: every environment write is checked, and only verified, soaked versions move on."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import NoReturn

from prefect.artifacts import create_markdown_artifact

from promo.flows.runinfo import flow_run_label, run_logger
from promo.config import PromoConfig
from promo.release.readiness import Readiness, deployed_by, readiness
from promo.gitops.verdicts import Verdict
from promo.tasks.history import read_environment_history
from promo.tasks.verify import verify_environment

OnFailure = Callable[[PromoConfig, Verdict], NoReturn]  # fails the run on a failed verdict, after what it does first


def verify_written(
    config: PromoConfig,
    env: str,
    version: str,
    gitops_commit: str | None,
    on_failure: OnFailure,
) -> Verdict | None:
    """Check that what a write deployed into ``env`` came up; a failed verdict fails the run, by ``on_failure``.

    ``gitops_commit`` is None when the write found ``env`` at ``version`` already (a re-run after a crash during
    verification, say): then the commit that last put it there is verified, without writing again, and a verdict
    recorded for it already is reused. None when ``env`` is not verified (no ``verify`` in promo.yaml): then promo
    records only that it deployed the commit (see ``verify_environment``), the signed time its soak starts from."""
    if config.environment(env).verify is None:
        commit = gitops_commit or _last_deployed(config, env, version, by_promo=True)
        if commit is not None:  # records only that promo deployed it
            verify_environment(config, env, version, commit, flow_run=flow_run_label())
        return None
    commit = gitops_commit or _last_deployed(config, env, version)
    if commit is None:
        run_logger().warning("No commit of the GitOps repo put %s into %s: nothing to verify", version, env)
        return None
    verdict = verify_environment(config, env, version, commit, flow_run=flow_run_label())
    run_logger().info(verdict.summary())
    create_markdown_artifact(
        key=f"verify-{config.app}-{env}",
        markdown=f"**{verdict.outcome}**: {config.app} `{version}` in {env} (commit `{commit[:12]}`): {verdict.reason}",
        description=verdict.summary(),
    )
    if not verdict.verified:
        on_failure(config, verdict)
    return verdict


def _last_deployed(config: PromoConfig, env: str, version: str, *, by_promo: bool = False) -> str | None:
    """The commit that last put ``version`` into ``env`` (only when promo wrote it, with ``by_promo``)."""
    change = deployed_by(read_environment_history(config, env), env, version)
    if change is None or (by_promo and change.kind == "manual"):
        return None
    return change.commit


def source_readiness(config: PromoConfig, source: str, version: str) -> Readiness:
    """What ``version`` still lacks in ``source`` before it may move on (verified there, soaked long enough); logged,
    so the run says it before its gate does."""
    settings = config.environment(source)
    if settings.verify is None and not settings.soak:
        return Readiness()
    found = readiness(read_environment_history(config, source), settings, version, datetime.now(timezone.utc))
    for line in found.missing:
        run_logger().warning("Not ready: %s", line)
    return found
