"""rollback: put back the last version verified in an environment, as a new forward commit, and verify it.

Asked for (`promo rollback ENV [--to VERSION]`), a rollback passes a gate like a promotion. After a failed
verification in an environment configured ``on_failure: rollback``, it runs without one: whoever wrote that into
promo.yaml made the decision. Either way it is bounded: an automatic rollback happens once, and never of a rollback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

from prefect import flow

from promo.flows.deploy import deploy
from promo.flows.gate_plan import approve, opened_gate
from promo.flows.runinfo import run_logger
from promo.flows.stored_config import run_config
from promo.flows.verification import OnFailure
from promo.config import PromoConfig
from promo.errors import ConflictError, NotFound, VerificationFailed
from promo.release.approvals import Decision
from promo.gitops.repo import Trailers, agreed_version
from promo.release.gate_plan import GatePlan
from promo.release.rollback import RollbackPlan, check_verified, rollback_target
from promo.gitops.verdicts import Verdict
from promo.tasks.chart import find_chart
from promo.tasks.gitops import plan_environment_version, read_environment_version, read_rejections, write_request
from promo.tasks.history import read_environment_history

AUTOMATIC_APPROVER = "promo (on_failure: rollback)"


@dataclass(frozen=True)
class Rollback:
    app: str
    env: str
    version: str
    rolled_back: str  # the version it replaced
    gitops_commit: str | None
    approved_by: str
    verdict: Verdict | None

    def summary(self) -> str:
        if self.gitops_commit is None:
            return f"{self.app} in {self.env} is already at {self.version}: nothing to roll back"
        checked = f", {self.verdict.outcome}" if self.verdict else ""
        return (
            f"rolled {self.app} in {self.env} back from {self.rolled_back} to {self.version} "
            f"(approved by {self.approved_by}, commit {self.gitops_commit[:12]}{checked})"
        )


@flow(name="rollback")
def rollback(env: str, to: str | None = None, config_path: str | None = None, app: str | None = None) -> Rollback:
    config = run_config(config_path, app)
    planned = opened_gate(env) or plan_rollback(config, env, to)
    decision = approve(config, planned)
    return write_rollback(config, planned, approved_by=decision.approver, comment=decision.comment, gate=decision)


def plan_rollback(config: PromoConfig, env: str, to: str | None) -> GatePlan:
    """Going back in ``env`` to ``to``, or to the last version verified there, from what it runs now."""
    check_verified(config.environment(env))
    history = read_environment_history(config, env)
    current, rejected = read_environment_version(config, env), read_rejections(config)
    return rollback_gate_plan(config, rollback_target(history, current, env=env, to=to, rejected=rejected))


def rollback_gate_plan(config: PromoConfig, chosen: RollbackPlan) -> GatePlan:
    """The rollback as its gate shows it (and as the automatic one writes it): the version put back, its chart, and
    the manifest change; the environment must still run what the rollback was chosen from."""
    shown = plan_environment_version(config, chosen.env, chosen.version, allow_downgrade=True)
    if set(shown.current.values()) != {chosen.current}:
        raise ConflictError(
            f"{chosen.env} of {config.app} moved away from {chosen.current} while the rollback was planned",
            f"run `promo rollback {chosen.env}` again",
        )
    digest = find_chart(config, chosen.version)
    return GatePlan(
        "rollback", chosen.env, chosen.version, digest, shown, headline=headline(config, chosen), going_back=True
    )


def roll_back_after_failure(config: PromoConfig, env: str, failed: Verdict) -> str | None:
    """After ``failed`` (a write into ``env`` that did not come up), roll back once when ``env`` says
    ``on_failure: rollback``; the version put back, or None when nothing was done (the log says why)."""
    if config.environment(env).on_failure != "rollback":
        return None
    logger = run_logger()
    history = read_environment_history(config, env)
    failed_write = next((change for change in history if change.commit == failed.gitops_commit), None)
    if failed_write is not None and failed_write.kind == "rollback":
        logger.warning(
            "No automatic rollback in %s: the write that failed was itself a rollback, and promo rolls back once",
            env,
        )
        return None
    current = read_environment_version(config, env)
    if current != failed.version:
        logger.warning("No automatic rollback in %s: it runs %s now, no longer %s", env, current, failed.version)
        return None
    try:
        chosen = rollback_target(history, current, env=env, rejected=read_rejections(config))
    except NotFound as nothing:
        logger.warning("No automatic rollback in %s: %s", env, nothing)
        return None
    logger.info("on_failure: rollback: %s", chosen.summary)
    written = write_rollback(
        config,
        rollback_gate_plan(config, chosen),
        approved_by=AUTOMATIC_APPROVER,
        comment=f"automatic, after {failed.version} failed verification: {failed.reason}",
        failed=failed,
    )
    return written.version


def headline(config: PromoConfig, chosen: RollbackPlan) -> str:
    why = f": `{chosen.current}` failed verification ({chosen.reason})" if chosen.reason else ""
    return (
        f"Roll back **{config.app}** in **{chosen.env}** from `{chosen.current}` to `{chosen.version}`, "
        f"the last version verified there{why}"
    )


def write_rollback(
    config: PromoConfig,
    planned: GatePlan,
    *,
    approved_by: str,
    comment: str,
    failed: Verdict | None = None,
    gate: Decision | None = None,
) -> Rollback:
    """The forward commit that puts ``planned.version`` back (only over what ``planned`` showed), then its verdict.

    ``failed`` is the verdict that started an automatic rollback: a rollback that fails too ends it there."""
    env, version = planned.target, planned.version
    rolled_back = agreed_version(planned.plan.current) or ""  # one version: rollback_gate_plan saw to it
    deployed = deploy(
        config,
        write_request(
            config,
            env,
            version,
            expected=planned.plan.current,
            subject=f"rollback({config.app}): {env} -> {version}",
            trailers=Trailers(
                chart_digest=planned.chart_digest,
                approved_by=approved_by,
                approval_comment=comment,
                rollback_of=rolled_back,
            ),
            allow_downgrade=True,
        ),
        on_failure=rollback_failed(failed),
        gate=gate,
    )
    approved_by = deployed.approved_by or approved_by
    done = Rollback(config.app, env, version, rolled_back, deployed.commit, approved_by, deployed.verdict)
    run_logger().info(done.summary())
    return done


def rollback_failed(failed: Verdict | None) -> OnFailure:
    """How a rollback that fails verification fails its run: never with another rollback, since promo rolls back once
    (``failed``: the verdict that started an automatic rollback; None for a rollback asked for)."""

    def fail(config: PromoConfig, verdict: Verdict) -> NoReturn:
        env, version = verdict.env, verdict.version
        if failed is None:
            raise VerificationFailed(
                f"the rollback of {config.app} in {env} to {version} failed verification: {verdict.reason}",
                f"see `promo history {env}` for the versions verified there and roll back with --to VERSION",
            )
        raise VerificationFailed(
            f"{config.app} {failed.version} failed verification in {env} ({failed.reason}) and the automatic "
            f"rollback to {version} failed too ({verdict.reason})",
            f"promo rolls back only once: fix {env} by hand or with `promo rollback {env} --to VERSION`",
        )

    return fail


def on_failed_verification(config: PromoConfig, verdict: Verdict) -> NoReturn:
    """How every other write's failed verdict fails its run. An environment with ``on_failure: rollback`` is first
    rolled back (once, never a rollback of a rollback: see ``roll_back_after_failure``); the run fails either way,
    since the version it deployed did not come up."""
    restored = roll_back_after_failure(config, verdict.env, verdict)
    fix = (
        f"{verdict.env} was rolled back to {restored} (on_failure: rollback); see `promo history {verdict.env}`"
        if restored is not None
        else f"see `promo history {verdict.env}`; roll back with `promo rollback {verdict.env}`"
    )
    raise VerificationFailed(
        f"{verdict.app} {verdict.version} failed verification in {verdict.env}: {verdict.reason}", fix
    )
