"""hotfix: a branch from a release tag with the patch bumped, and a draft pull request back to main.

Pushing to the branch builds it: publish-dev takes the branch, and its RC comes from the branch's Chart.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from promo.flows.stored_config import run_config
from promo.release.hotfix import HotfixPlan
from promo.tasks.forge import open_pull_request
from promo.tasks.hotfix import check_hotfix_is_new, create_hotfix_branch


@dataclass(frozen=True)
class Hotfix:
    tag: str
    version: str
    branch: str
    commit: str
    pull_request: str

    def summary(self) -> str:
        return f"hotfix {self.version} of {self.tag} on branch {self.branch} ({self.commit[:12]}); {self.pull_request}"


@flow(name="hotfix")
def hotfix(tag: str, config_path: str | None = None, app: str | None = None) -> Hotfix:
    plan = HotfixPlan.of(tag)
    config = run_config(config_path, app)
    release_commit = check_hotfix_is_new(config, plan)
    commit = create_hotfix_branch(config, plan, release_commit)
    pull = open_pull_request(
        config,
        plan.branch,
        title=f"Hotfix {plan.version} ({plan.tag} + fixes)",
        body=f"Branched from {plan.tag} ({release_commit[:12]}) by promo hotfix. Push fixes here; each push builds "
        f"{plan.version}-rc.<sha> into dev. Merge back to main once released.",
    )
    made = Hotfix(tag, plan.version, plan.branch, commit, pull.url or f"draft pull request {plan.branch} -> {pull.base}")
    create_markdown_artifact(key=f"hotfix-{config.app}", markdown=f"## {made.summary()}", description=made.summary())
    return made
