"""The GitOps repository: what each environment runs, and the commits that change it."""

from __future__ import annotations

from collections.abc import Mapping

from prefect import task
from prefect.runtime import flow_run

from promo.clients import gitops_repo
from promo.config import PromoConfig
from promo.tasks.limits import gitops_lock
from promo.gitops.repo import Plan, Proposal, SetVersionResult, Trailers, WriteRequest
from promo.versions import parse_version
from promo import windows
from promo.gitops import controls
from promo.tasks.retry import TRANSIENT_RETRIES


@task(name="read-environment-version", **TRANSIENT_RETRIES)
def read_environment_version(config: PromoConfig, env: str) -> str:
    """The chart version ``env`` runs; a ``targetRevision`` such as ``main`` is no chart version and is refused."""
    version = gitops_repo(config).environment_version(config.app, env, config.environment(env).clusters)
    parse_version(version, what=f"the targetRevision of {config.app} in {env}")
    return version


@task(name="plan-environment-version", **TRANSIENT_RETRIES)
def plan_environment_version(
    config: PromoConfig,
    env: str,
    version: str,
    *,
    allow_downgrade: bool = False,
    at_gate: bool = False,
    built_as: str | None = None,
) -> Plan:
    """What writing ``version`` into ``env`` changes; a version below what ``env`` runs is refused already here,
    unless ``allow_downgrade`` (a rollback, and nothing else). Every publish, promotion, release and rollback plans
    here, so here are the operator's controls, each refused in one line:

    - a rejected version (or the RC ``built_as`` it is released from) is never written, a rollback's included;
    - outside ``env``'s change windows, naming the next opening;
    - into a frozen ``env``, unless ``at_gate``: a run whose gate shows the freeze (``freeze_line``), where only an
      approver's override reason passes it (flows/gate_plan.py checks again after the decision).

    A rollback passes windows and freezes: it is the emergency exit (so is the re-read after a gate, which waits
    for its window, flows/gate_plan.py)."""
    repo = gitops_repo(config)
    controls.check_not_rejected(controls.read_rejections(repo.mirror, config.app), version, *filter(None, [built_as]))
    if not allow_downgrade:
        windows.check_window(config.app, env, config.environment(env).windows, windows.utc_now())
        freeze = None if at_gate else controls.read_freeze(repo.mirror, env, windows.utc_now())
        if freeze is not None:
            raise freeze.refusal(config.app)
    return repo.plan(
        config.app,
        env,
        config.environment(env).clusters,
        version,
        release_environment=release_environment(config, env),
        allow_downgrade=allow_downgrade,
    )


@task(name="read-freeze", **TRANSIENT_RETRIES)
def read_freeze(config: PromoConfig, env: str) -> controls.Freeze | None:
    """``env``'s freeze now, as the GitOps remote has it; None when it is not frozen."""
    return controls.read_freeze(gitops_repo(config).mirror, env, windows.utc_now())


@task(name="read-hold", **TRANSIENT_RETRIES)
def read_hold(config: PromoConfig, env: str) -> str | None:
    """Why a write into ``env`` that has no gate would be refused now (its change windows, then a freeze), in one
    line; None when nothing holds it back. For a write promo may put off instead of failing, such as the next build."""
    opening = windows.closed_until(config.environment(env).windows, windows.utc_now())
    if opening is not None:
        return f"{env} is outside its change windows until {windows.describe_opening(opening)}"
    freeze = controls.read_freeze(gitops_repo(config).mirror, env, windows.utc_now())
    return freeze.line() if freeze is not None else None


@task(name="read-rejections", **TRANSIENT_RETRIES)
def read_rejections(config: PromoConfig) -> dict[str, controls.Rejection]:
    """version -> its rejection, for the app, as the GitOps remote has them now."""
    return controls.read_rejections(gitops_repo(config).mirror, config.app)


def write_request(
    config: PromoConfig,
    env: str,
    version: str,
    *,
    expected: Mapping[str, str],
    subject: str,
    trailers: Trailers,
    allow_downgrade: bool = False,
) -> WriteRequest:
    """The write of ``version`` into ``env`` over ``expected`` (``Plan.current`` as the gate showed it), with what
    the flows never choose derived here, once for every write, pushed or proposed: the app and the clusters of
    ``env`` from promo.yaml, where releases run (``release_environment``: a hotfix's floor), and this run's flow as
    the command to run again should the target move. ``allow_downgrade`` is a rollback's alone."""
    return WriteRequest(
        config.app,
        env,
        config.environment(env).clusters,
        version,
        expected=expected,
        subject=subject,
        trailers=trailers,
        allow_downgrade=allow_downgrade,
        release_environment=release_environment(config, env),
        rerun=flow_run.get_flow_name(),
    )


@task(name="write-environment-version", **TRANSIENT_RETRIES)
def write_environment_version(config: PromoConfig, request: WriteRequest) -> SetVersionResult:
    """One commit setting every cluster of the request's environment; a rejected push is re-applied on the new head
    inside the call.

    The fetch-edit-push holds the GitOps repository's lock on the Prefect server (``gitops_lock``), so writers with
    caches on other workers or hosts queue for the repository instead of racing at it.

    ``request.expected`` is ``Plan.current`` as the gate showed it: a cluster that moved since refuses the write
    (ConflictError, never retried), as does a version below what runs (a hotfix may pass, see ``is_downgrade``),
    unless ``request.allow_downgrade``: a rollback's, which goes back on purpose."""
    url = config.gitops.url
    return gitops_repo(config, write_lock=lambda: gitops_lock(url)).set_version(request)


def release_environment(config: PromoConfig, env: str) -> tuple[str, list[str]] | None:
    """The last environment, whose version a hotfix must stay above on its way there; None for that one itself."""
    releases = config.environments[-1]
    return None if env == releases.name else (releases.name, releases.clusters)


@task(name="propose-environment-version", **TRANSIENT_RETRIES)
def propose_environment_version(config: PromoConfig, request: WriteRequest, *, branch: str) -> Proposal | None:
    """The commit ``write_environment_version`` would push, pushed to ``branch`` for a pull request instead (None:
    the environment runs the version already). The same planning and checks against ``request.expected``; an earlier
    attempt's branch with the same change is reused, one with another change is a StaleBranch for the caller to
    close."""
    return gitops_repo(config).propose_version(request, branch=branch)
