"""The one deploy step of every flow that moves a version: lock, compare-and-swap write, land, verify.

publish-dev, the promotions, release-prod and rollback differ in what they plan and ask before it, never in how a
version goes into an environment. What a failed verdict does next is the caller's (``on_failure``): the automatic
rollback, or, for a rollback itself, a message and no second rollback.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from promo.flows.artifacts import publish_environment_table
from promo.flows.runinfo import flow_run_label
from promo.flows.verification import OnFailure, verify_written
from promo.flows.pull_request import write_through_pull_request
from promo.flows.supersede import supersede_waiting_gates
from promo.config import PromoConfig
from promo.gitops.repo import WriteRequest
from promo.gitops.verdicts import Verdict
from promo.release.approvals import Decision
from promo.tasks.gitops import write_environment_version
from promo.tasks.limits import environment_lock


@dataclass(frozen=True)
class Deployed:
    env: str
    version: str
    commit: str | None  # None when ``env`` ran ``version`` already: nothing was written
    verdict: Verdict | None  # None when not verified: ``env`` has no ``verify:``, or the caller verifies later
    approved_by: str | None = None  # the review that passed a pull-request gate: ``alice (GitHub review 7)``

    @property
    def verification(self) -> str | None:
        """The verdict's one line, as the flows' results and artifacts show it."""
        return self.verdict.summary() if self.verdict else None


def deploy(
    config: PromoConfig, request: WriteRequest, *, on_failure: OnFailure | None, gate: Decision | None = None
) -> Deployed:
    """Write ``request`` (its version into its environment over what the gate showed, ``write_request``) and verify
    what the write deployed.

    The environment's lock is held for the write alone: verification takes minutes and changes no manifest. The
    commit's ``Chart-Version`` and ``Flow-Run`` trailers are the step's own. A write that finds the environment at the
    version already (a re-run) writes nothing and verifies the commit that put it there (``verify_written``). A
    failed verdict goes to ``on_failure``; None leaves verifying to the caller, who calls ``verify_written`` with the
    commit (release-prod, which verifies prod last: see its module)."""
    env, version = request.env, request.version
    request = replace(request, trailers=replace(request.trailers, chart_version=version, flow_run=flow_run_label()))
    approved_by = landed_by = None
    if config.environment(env).write == "pull-request":
        # No environment lock while a review may take days: the merge names the reviewed head (compare-and-swap).
        page = gate.review_page if gate is not None and gate.review_page else request.subject
        through = write_through_pull_request(config, request, page=page)
        commit, approved_by = through.commit, through.review.trailer if through.review else None
        landed_by = through.pull_request.html_url if through.pull_request else None
    else:
        with environment_lock(config.app, env):
            commit = write_environment_version(config, request).commit
    landed(config, env, version, commit, landed_by)
    if on_failure is None:
        return Deployed(env, version, commit, None, approved_by)
    return Deployed(env, version, commit, verify_written(config, env, version, commit, on_failure), approved_by)


def landed(
    config: PromoConfig, env: str, version: str, commit: str | None, landed_by: str | None = None
) -> None:
    """``env`` runs ``version`` now, by ``commit`` (None: it did already, a re-run finds it so). The one place for
    what follows from a version landing in an environment, before its verdict: it happened whether or not the
    version then comes up. Each thing done here is idempotent, as a re-run calls it again. ``landed_by`` is the pull
    request that landed it (its page), which the pull requests it supersedes link to."""
    publish_environment_table(config)
    supersede_waiting_gates(config, env, version, landed_by)
