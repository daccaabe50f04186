"""publish-dev: build the image and the RC chart of one commit and run it in the first environment.

A commit's image and RC chart are published once: a run for a commit whose tags exist already reuses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from promo.flows.deploy import deploy
from promo.flows.rollback import on_failed_verification
from promo.flows.stored_config import run_config
from promo.config import PromoConfig
from promo.gitops.repo import Trailers
from promo.registry.helm import PushedChart
from promo.registry.images import BuiltImage
from promo.versions import short_sha
from promo.tasks.chart import check_registry_access, package_rc_chart, push_rc_chart
from promo.tasks.gitops import plan_environment_version, write_request
from promo.tasks.image import build_image
from promo.tasks.source import (
    BuildRequest,
    export_source,
    read_chart_base_version,
    read_commit_time,
    resolve_build_commit,
)


@dataclass(frozen=True)
class Published:
    app: str
    commit: str
    branch: str
    environment: str
    chart_version: str
    chart_digest: str
    image: str
    image_digest: str
    gitops_commit: str | None
    verification: str | None = None  # the verdict's one line; None when the environment is not verified

    def summary(self) -> str:
        return (
            f"published {self.app} {self.chart_version} to {self.environment}: "
            f"image {self.image}@{self.image_digest}, chart {self.chart_digest}"
        )


@flow(name="publish-dev")
def publish_dev(
    sha: str | None = None, branch: str | None = None, config_path: str | None = None, app: str | None = None
) -> Published:
    config = run_config(config_path, app)
    branch = config.app_repo.branch if branch is None else branch  # the app repository's, as promo.yaml names it
    request = BuildRequest.checked(sha, branch)
    check_registry_access(config)
    base = read_chart_base_version(config, request)
    env = config.first_environment.name
    # Every manifest of the environment is there and editable; what it runs now is what the build replaces, so a
    # concurrent write into it during the build is refused at the write rather than overwritten.
    planned = plan_environment_version(config, env, base)
    commit = resolve_build_commit(config, request)
    with TemporaryDirectory(prefix="promo-source-") as workdir:
        source = export_source(config, commit, Path(workdir))
        image = build_image(config, source, tag=short_sha(commit), created=read_commit_time(config, commit))
        chart = package_rc_chart(config, source, base, commit)
    pushed = push_rc_chart(config, chart)
    deployed = deploy(
        config,
        write_request(
            config,
            env,
            chart.version,
            expected=planned.current,
            subject=f"deploy({config.app}): {env} -> {chart.version}",
            trailers=Trailers(chart_digest=pushed.digest, image=image.pinned),
        ),
        on_failure=on_failed_verification,
    )
    published = Published(
        app=config.app,
        commit=commit,
        branch=branch,
        environment=env,
        chart_version=chart.version,
        chart_digest=pushed.digest,
        image=image.reference,
        image_digest=image.digest,
        gitops_commit=deployed.commit,
        verification=deployed.verification,
    )
    publish_summary(config, published, image, pushed)
    return published


def publish_summary(config: PromoConfig, published: Published, image: BuiltImage, chart: PushedChart) -> None:
    gitops = published.gitops_commit or "none (already deployed)"
    create_markdown_artifact(
        key=f"publish-{config.app}",
        markdown="\n".join(
            [
                f"## {config.app} `{published.chart_version}` published to {published.environment}",
                "",
                "| | |",
                "|---|---|",
                f"| commit | `{published.commit}` on `{published.branch}` |",
                f"| image | `{image.reference}` |",
                f"| image digest | `{image.digest}` {_provenance(image.reused)} |",
                f"| chart | `{chart.repository}:{chart.tag}` |",
                f"| chart digest | `{chart.digest}` {_provenance(chart.reused)} |",
                f"| GitOps commit | `{gitops}` |",
                f"| verification | {published.verification or '- (not verified)'} |",
            ]
        ),
        description=published.summary(),
    )


def _provenance(reused: bool) -> str:
    return "(in the registry already: reused, not pushed again)" if reused else "(pushed by this run)"
