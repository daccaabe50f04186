"""release-prod: the exact chart that passed stage becomes a clean SemVer release in prod.

Every step checks whether it is already done and skips it, so a run stopped at any point and started again
finishes the release exactly once.

The RC moves only once it is verified and soaked in stage (approving anyway needs a reason, shown at the gate). Prod
is verified last, after main's bump and the next dev build: once prod's write lands the release is final (its tag
and chart never change), so what follows from it must not wait on prod's health. A failed verification then fails
the run with the release done; a re-run skips every step and verifies the commit that put the release in prod,
reusing its verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.deployments import run_deployment
from prefect.runtime import deployment

from promo.flows.deploy import deploy
from promo.flows.gate_plan import approve, opened_gate, with_freeze
from promo.tasks.limits import release_lock
from promo.flows.publish_dev import publish_dev
from promo.flows.rollback import on_failed_verification
from promo.flows.runinfo import run_logger
from promo.flows.verification import source_readiness, verify_written
from promo.flows.stored_config import run_config
from promo.config import PromoConfig
from promo.gitops.repo import Trailers
from promo.release.candidate import ReleaseCandidate
from promo.release.gate_plan import GatePlan
from promo.versions import bump, rc_version
from promo.tasks.chart import find_chart, lookup_chart
from promo.tasks.forge import check_release_tag, publish_release
from promo.tasks.gitops import plan_environment_version, read_environment_version, read_hold, write_request
from promo.tasks.release import (
    bump_main,
    find_next_build_commit,
    prepare_release_chart,
    publish_release_chart,
    resolve_release_commit,
)


@dataclass(frozen=True)
class Released:
    app: str
    version: str
    rc: str
    commit: str
    rc_digest: str
    release_digest: str
    release_url: str | None
    approved_by: str | None
    main_bumped_to: str | None
    next_build: str | None
    verification: str | None = None  # prod's verdict, one line; None when prod is not verified

    def summary(self) -> str:
        return f"released {self.app} {self.version} (from {self.rc}, commit {self.commit[:12]}) to prod"


@flow(name="release-prod")
def release_prod(config_path: str | None = None, app: str | None = None) -> Released:
    config = run_config(config_path, app)
    prod = config.environments[-1].name
    stage = config.source_of(prod).name
    planned = opened_gate(prod) or plan_release(config, stage, prod)
    candidate, rc_digest = ReleaseCandidate.of(planned.built_as or planned.version, stage), planned.chart_digest
    commit = resolve_release_commit(config, candidate)
    check_release_tag(config, candidate, commit)
    release_chart = prepare_release_chart(config, candidate, rc_digest)
    approver = comment = override_reason = None
    decision = None
    if not planned.plan.already_current:
        decision = approve(config, planned)  # prod still runs what its gate showed: checked before the chart and tag
        approver, comment, override_reason = decision.approver, decision.comment, decision.override_reason
    with release_lock(config.app):  # checked again after the gate: another run may have released X.Y.Z meanwhile
        pushed = publish_release_chart(config, release_chart)
    release = publish_release(config, candidate, commit)
    deployed = deploy(
        config,
        write_request(
            config,
            prod,
            candidate.version,
            expected=planned.plan.current,
            subject=f"release({config.app}): {prod} -> {candidate.version}",
            trailers=Trailers(
                promoted_from=stage,
                chart_digest=pushed.digest,
                approved_by=approver,
                approval_comment=comment,
                override_reason=override_reason,
            ),
        ),
        on_failure=None,  # prod is verified last, below: see the module's docstring
        gate=decision,
    )
    approver = deployed.approved_by or approver
    bumped = bump_main(config, candidate.version)
    next_build = start_next_build(config, config_path, app, candidate.version, commit)
    verdict = verify_written(config, prod, candidate.version, deployed.commit, on_failed_verification)
    released = Released(
        app=config.app,
        version=candidate.version,
        rc=candidate.rc,
        commit=commit,
        rc_digest=rc_digest,
        release_digest=pushed.digest,
        release_url=release.url,
        approved_by=approver,
        main_bumped_to=bumped.after,
        next_build=next_build,
        verification=verdict.summary() if verdict else None,
    )
    record_release(config, released)
    return released


def plan_release(config: PromoConfig, stage: str, prod: str) -> GatePlan:
    """Releasing the RC ``stage`` runs now into ``prod``: the RC's chart, what prod's clusters change, and what the RC
    lacks in ``stage``. Its collisions (tag, release chart) are checked by the flow, before the gate."""
    candidate = ReleaseCandidate.of(read_environment_version(config, stage), stage)
    rc_digest = find_chart(config, candidate.rc)
    plan = plan_environment_version(config, prod, candidate.version, at_gate=True, built_as=candidate.rc)
    if plan.already_current:  # nothing to write, so nothing to hold back
        return GatePlan(stage, prod, candidate.version, rc_digest, plan, built_as=candidate.rc)
    ready = with_freeze(config, prod, source_readiness(config, stage, candidate.rc))
    return GatePlan(stage, prod, candidate.version, rc_digest, plan, ready, built_as=candidate.rc)


def start_next_build(
    config: PromoConfig, config_path: str | None, app: str | None, released: str, release_commit: str
) -> str | None:
    """Build main's bump commit once: skipped when there is none (a hotfix) or its RC already exists. Under a
    deployment, publish-dev's deployment runs it (with its own preset ``app``); else a subflow with this run's
    config."""
    bump_commit = find_next_build_commit(config, released, release_commit)
    if bump_commit is None:
        return None
    next_rc = rc_version(bump(released, "patch"), bump_commit)
    if lookup_chart(config, next_rc) is not None:
        run_logger().info("The next build %s exists already", next_rc)
        return next_rc
    # publish-dev has no gate, so a closed window or a freeze of dev refuses it: the release is final by now, and
    # must not fail for it (a re-run would fail the same way). The build waits for a person to start it.
    hold = read_hold(config, config.environments[0].name)
    if hold is not None:
        run_logger().warning("The next build %s is not started: %s; once it may, run `promo publish-dev --sha %s`",
                             next_rc, hold, bump_commit)  # fmt: skip
        return None
    if deployment.get_id():
        run_deployment(
            f"publish-dev/{config.app}",
            parameters={"sha": bump_commit, "branch": config.app_repo.branch},
            idempotency_key=f"publish-dev-{config.app}-{bump_commit}",
            timeout=0,
            as_subflow=False,
        )
    else:
        publish_dev(sha=bump_commit, branch=config.app_repo.branch, config_path=config_path, app=app)
    return next_rc


def record_release(config: PromoConfig, released: Released) -> None:
    rows = [
        ("release", f"`{released.version}`"),
        ("from RC", f"`{released.rc}`"),
        ("commit", f"`{released.commit}`"),
        ("RC chart digest", f"`{released.rc_digest}`"),
        ("release chart digest", f"`{released.release_digest}`"),
        ("approved by", released.approved_by or "(already deployed)"),
        ("release", released.release_url or "-"),
        ("main bumped to", released.main_bumped_to or "(not bumped: already past)"),
        ("next dev build", released.next_build or "-"),
        ("verification", released.verification or "- (not verified)"),
    ]
    create_markdown_artifact(
        key=f"release-{config.app}",
        markdown="\n".join([f"## {released.summary()}", "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]),
        description=released.summary(),
    )
