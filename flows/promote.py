"""promote-<env>: move the version running in the previous environment into the next one, after approval.

Zero required inputs: what moves is read from the GitOps repo, never typed by a person.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import Flow, flow
from prefect.artifacts import create_markdown_artifact

from promo.flows.deploy import deploy
from promo.flows.gate_plan import approve, opened_gate, with_freeze
from promo.flows.rollback import on_failed_verification
from promo.flows.runinfo import run_logger
from promo.flows.verification import source_readiness, verify_written
from promo.flows.stored_config import run_config
from promo.config import PromoConfig
from promo.gitops.repo import Trailers
from promo.release.gate_plan import GatePlan
from promo.tasks.chart import find_chart
from promo.tasks.gitops import plan_environment_version, read_environment_version, write_request


@dataclass(frozen=True)
class Promotion:
    app: str
    version: str
    source: str
    target: str
    chart_digest: str
    gitops_commit: str | None
    approved_by: str | None
    verification: str | None = None  # the verdict's one line; None when the target is not verified

    def summary(self) -> str:
        if self.gitops_commit is None:
            return f"{self.app} in {self.target} is already at {self.version}: nothing to promote"
        return (
            f"promoted {self.app} {self.version} from {self.source} to {self.target} "
            f"(approved by {self.approved_by}, commit {self.gitops_commit[:12]})"
        )


def promote_into(target: str, config_path: str | None, app: str | None) -> Promotion:
    """The runbook shared by every promote flow; it runs inside that flow's run.

    The version moves only once it is verified and soaked in the source; what it lacks is shown at the gate, where
    approving anyway needs a reason. A run resumed after its gate carries out the plan the gate showed, whatever
    the source runs by then. After the write the target is verified; a target already at the version (a re-run
    after a crash during verification) is verified without writing again."""
    config = run_config(config_path, app)
    source = config.source_of(target).name
    planned = opened_gate(target) or plan_promotion(config, source, target)
    version, digest = planned.version, planned.chart_digest
    if planned.plan.already_current:
        verdict = verify_written(config, target, version, None, on_failed_verification)
        verification = verdict.summary() if verdict else None
        promotion = Promotion(
            config.app, version, source, target, digest, gitops_commit=None, approved_by=None, verification=verification
        )
        run_logger().info(promotion.summary())
        return promotion
    decision = approve(config, planned)
    deployed = deploy(
        config,
        write_request(
            config,
            target,
            version,
            expected=planned.plan.current,
            subject=f"promote({config.app}): {source} -> {target} {version}",
            trailers=Trailers(
                promoted_from=source,
                chart_digest=digest,
                approved_by=decision.approver,
                approval_comment=decision.comment,
                override_reason=decision.override_reason,
            ),
        ),
        on_failure=on_failed_verification,
        gate=decision,
    )
    approver = deployed.approved_by or decision.approver
    promotion = Promotion(config.app, version, source, target, digest, deployed.commit, approver, deployed.verification)
    record_promotion(config, promotion, planned.plan.diff)
    return promotion


def plan_promotion(config: PromoConfig, source: str, target: str) -> GatePlan:
    """What promoting the version ``source`` runs now into ``target`` changes, and what it lacks in ``source``."""
    version = read_environment_version(config, source)
    digest = find_chart(config, version)
    plan = plan_environment_version(config, target, version, at_gate=True)
    if plan.already_current:  # nothing to write, so nothing to hold back
        return GatePlan(source, target, version, digest, plan)
    ready = with_freeze(config, target, source_readiness(config, source, version))
    return GatePlan(source, target, version, digest, plan, ready)


def record_promotion(config: PromoConfig, promotion: Promotion, diff: str) -> None:
    create_markdown_artifact(
        key=f"promote-{config.app}-{promotion.target}",
        markdown=(
            f"## {promotion.summary()}\n\n{promotion.verification or 'not verified'}\n\n```diff\n{diff.rstrip()}\n```"
        ),
        description=promotion.summary(),
    )


@flow(name="promote-test")
def promote_test(config_path: str | None = None, app: str | None = None) -> Promotion:
    return promote_into("test", config_path, app)


@flow(name="promote-stage")
def promote_stage(config_path: str | None = None, app: str | None = None) -> Promotion:
    return promote_into("stage", config_path, app)


FLOWS: dict[str, Flow] = {"test": promote_test, "stage": promote_stage}
