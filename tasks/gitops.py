"""The GitOps repository: what each environment runs, and the commits that change it."""

from __future__ import annotations

from collections.abc import Mapping

from prefect import task
from prefect.runtime import flow_run

from promo.clients import gitops_repo
from promo.config import PromoConfig
from promo.tasks.limits import gitops_lock
from promo.gitops.repo import Plan, Proposal, SetVersionResult, Trailers
from promo.versions import parse_version
from promo import windows
from promo.tasks.retry import TRANSIENT_RETRIES


@task(name="read-environment-version", **TRANSIENT_RETRIES)
def read_environment_version(config: PromoConfig, env: str) -> str:
    """The chart version ``env`` runs; a ``targetRevision`` such as ``main`` is no chart version and is refused."""
    version = gitops_repo(config).environment_version(config.app, env, config.environment(env).clusters)
    parse_version(version, what=f"the targetRevision of {config.app} in {env}")
    return version


@task(name="plan-environment-version", **TRANSIENT_RETRIES)
def plan_environment_version(config: PromoConfig, env: str, version: str, *, allow_downgrade: bool = False) -> Plan:
    """What writing ``version`` into ``env`` changes; a version below what ``env`` runs is refused already here,
    unless ``allow_downgrade`` (a rollback, and nothing else). So is a write outside ``env``'s change windows, naming
    the next opening: every publish, promotion and release plans here. Not a rollback: like a freeze, a window does
    not hold back the emergency exit (nor the re-read after a gate, which waits for its window, flows/gate_plan.py)."""
    if not allow_downgrade:
        windows.check_window(config.app, env, config.environment(env).windows, windows.utc_now())
    return gitops_repo(config).plan(
        config.app,
        env,
        config.environment(env).clusters,
        version,
        release_environment=release_environment(config, env),
        allow_downgrade=allow_downgrade,
    )


@task(name="write-environment-version", **TRANSIENT_RETRIES)
def write_environment_version(
    config: PromoConfig,
    env: str,
    version: str,
    *,
    expected: Mapping[str, str],
    subject: str,
    trailers: Trailers,
    allow_downgrade: bool = False,
) -> SetVersionResult:
    """One commit setting every cluster of ``env``; a rejected push is re-applied on the new head inside the call.

    The fetch-edit-push holds the GitOps repository's lock on the Prefect server (``gitops_lock``), so writers with
    caches on other workers or hosts queue for the repository instead of racing at it.

    ``expected`` is ``Plan.current`` as the gate showed it: a cluster that moved since refuses the write
    (ConflictError, never retried), as does a version below what runs (a hotfix may pass, see ``is_downgrade``),
    unless ``allow_downgrade``: a rollback's, which goes back on purpose."""
    url = config.gitops.url
    return gitops_repo(config, write_lock=lambda: gitops_lock(url)).set_version(
        config.app,
        env,
        config.environment(env).clusters,
        version,
        expected=expected,
        subject=subject,
        trailers=trailers,
        release_environment=release_environment(config, env),
        rerun=flow_run.get_flow_name(),  # the command to run again when the target moved
        allow_downgrade=allow_downgrade,
    )


def release_environment(config: PromoConfig, env: str) -> tuple[str, list[str]] | None:
    """The last environment, whose version a hotfix must stay above on its way there; None for that one itself."""
    releases = config.environments[-1]
    return None if env == releases.name else (releases.name, releases.clusters)


@task(name="propose-environment-version", **TRANSIENT_RETRIES)
def propose_environment_version(
    config: PromoConfig,
    env: str,
    version: str,
    *,
    branch: str,
    expected: Mapping[str, str],
    subject: str,
    trailers: Trailers,
    allow_downgrade: bool = False,
) -> Proposal | None:
    """The commit ``write_environment_version`` would push, pushed to ``branch`` for a pull request instead (None:
    ``env`` runs ``version`` already). The same planning and checks against ``expected``; an earlier attempt's branch
    with the same change is reused, one with another change is a StaleBranch for the caller to close."""
    return gitops_repo(config).propose_version(
        config.app,
        env,
        config.environment(env).clusters,
        version,
        branch=branch,
        expected=expected,
        subject=subject,
        trailers=trailers,
        release_environment=release_environment(config, env),
        rerun=flow_run.get_flow_name(),
        allow_downgrade=allow_downgrade,
    )
