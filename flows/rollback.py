"""rollback: put back the last version verified in an environment, as a new forward commit, and verify it.

Asked for (`promo rollback ENV [--to VERSION]`), a rollback passes a gate like a promotion. After a failed
verification in an environment configured ``on_failure: rollback``, it runs without one: whoever wrote that into
promo.yaml made the decision. Either way it is bounded: an automatic rollback happens once, and never of a rollback.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow

from promo.flows.artifacts import publish_environment_table
from promo.flows.gate import ask_approval
from promo.flows.limits import environment_lock
from promo.flows.runinfo import flow_run_label, run_logger
from promo.flows.stored_config import run_config
from promo.config import PromoConfig
from promo.errors import ConflictError, NotFound, VerificationFailed
from promo.gitops.repo import Plan, Trailers
from promo.release.rollback import RollbackPlan, check_verified, rollback_target
from promo.gitops.verdicts import Verdict
from promo.tasks.chart import find_chart
from promo.tasks.gitops import plan_environment_version, read_environment_version, write_environment_version
from promo.tasks.history import read_environment_history
from promo.tasks.verify import verify_environment

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
    check_verified(config.environment(env))
    history = read_environment_history(config, env)
    chosen = rollback_target(history, read_environment_version(config, env), env=env, to=to)
    digest = find_chart(config, chosen.version)
    shown = plan_rollback_write(config, chosen)
    decision = ask_approval(
        config,
        shown,
        source="rollback",
        target=env,
        version=chosen.version,
        chart_digest=digest,
        headline=headline(config, chosen),
        going_back=True,
    )
    return write_rollback(config, chosen, shown, digest, approved_by=decision.approver, comment=decision.comment)


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
        chosen = rollback_target(history, current, env=env)
    except NotFound as nothing:
        logger.warning("No automatic rollback in %s: %s", env, nothing)
        return None
    logger.info("on_failure: rollback: %s", chosen.summary)
    digest = find_chart(config, chosen.version)
    written = write_rollback(
        config,
        chosen,
        plan_rollback_write(config, chosen),
        digest,
        approved_by=AUTOMATIC_APPROVER,
        comment=f"automatic, after {failed.version} failed verification: {failed.reason}",
        failed=failed,
    )
    return written.version


def plan_rollback_write(config: PromoConfig, chosen: RollbackPlan) -> Plan:
    """The manifest change a rollback makes; the environment must still run what the rollback was chosen from."""
    shown = plan_environment_version(config, chosen.env, chosen.version, allow_downgrade=True)
    if set(shown.current.values()) != {chosen.current}:
        raise ConflictError(
            f"{chosen.env} of {config.app} moved away from {chosen.current} while the rollback was planned",
            f"run `promo rollback {chosen.env}` again",
        )
    return shown


def headline(config: PromoConfig, chosen: RollbackPlan) -> str:
    why = f": `{chosen.current}` failed verification ({chosen.reason})" if chosen.reason else ""
    return (
        f"Roll back **{config.app}** in **{chosen.env}** from `{chosen.current}` to `{chosen.version}`, "
        f"the last version verified there{why}"
    )


def write_rollback(
    config: PromoConfig,
    chosen: RollbackPlan,
    shown: Plan,
    chart_digest: str,
    *,
    approved_by: str,
    comment: str,
    failed: Verdict | None = None,
) -> Rollback:
    """The forward commit that puts ``chosen.version`` back (only over what ``shown`` showed), then its verdict.

    ``failed`` is the verdict that started an automatic rollback: a rollback that fails too ends it there."""
    env = chosen.env
    with environment_lock(config.app, env):
        written = write_environment_version(
            config,
            env,
            chosen.version,
            expected=shown.current,
            subject=f"rollback({config.app}): {env} -> {chosen.version}",
            trailers=Trailers(
                chart_version=chosen.version,
                chart_digest=chart_digest,
                flow_run=flow_run_label(),
                approved_by=approved_by,
                approval_comment=comment,
                rollback_of=chosen.current,
            ),
            allow_downgrade=True,
        )
    verdict = None
    if written.commit is not None:
        publish_environment_table(config)
        verdict = verify_environment(config, env, chosen.version, written.commit, flow_run=flow_run_label())
        if verdict is not None and not verdict.verified:
            raise rollback_failed(config, chosen, verdict, failed)
    rolled_back = Rollback(config.app, env, chosen.version, chosen.current, written.commit, approved_by, verdict)
    run_logger().info(rolled_back.summary())
    return rolled_back


def rollback_failed(
    config: PromoConfig, chosen: RollbackPlan, verdict: Verdict, failed: Verdict | None
) -> VerificationFailed:
    if failed is None:
        return VerificationFailed(
            f"the rollback of {config.app} in {chosen.env} to {chosen.version} failed verification: {verdict.reason}",
            f"see `promo history {chosen.env}` for the versions verified there and roll back with --to VERSION",
        )
    return VerificationFailed(
        f"{config.app} {failed.version} failed verification in {chosen.env} ({failed.reason}) and the automatic "
        f"rollback to {chosen.version} failed too ({verdict.reason})",
        f"promo rolls back only once: fix {chosen.env} by hand or with `promo rollback {chosen.env} --to VERSION`",
    )
