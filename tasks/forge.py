"""Releases and pull requests on the app repository's forge (annotated git tags locally, or GitHub)."""

from __future__ import annotations

from prefect import task

from promo.clients import app_mirror, forge
from promo.config import PromoConfig
from promo.errors import ConflictError
from promo.forges.base import PullRequest, Release, same_commit_or_conflict
from promo.release.candidate import ReleaseCandidate, previous_release_tag
from promo.release.notes import render_release_notes
from promo.tasks.retry import TRANSIENT_RETRIES


@task(name="check-release-tag", **TRANSIENT_RETRIES)
def check_release_tag(config: PromoConfig, candidate: ReleaseCandidate, commit: str) -> bool:
    """Before the gate and before any push: the release tag is free, or already at the RC's commit (a re-run)."""
    mirror = app_mirror(config)
    mirror.fetch()
    tagged = mirror.tags().get(candidate.tag)
    if tagged is not None and tagged != commit:
        raise ConflictError(
            f"{candidate.tag} is already released at commit {tagged[:12]}, but stage runs {candidate.rc} "
            f"from {commit[:12]}",
            f"release a new version: bump Chart.yaml past {candidate.version} and build a new RC",
        )
    return tagged is not None


@task(name="publish-release", **TRANSIENT_RETRIES)
def publish_release(config: PromoConfig, candidate: ReleaseCandidate, commit: str) -> Release:
    """The release at the RC's commit, with notes from the commits since the previous release; once."""
    mirror = app_mirror(config)
    mirror.fetch()
    releases = forge(config, mirror)
    existing = releases.find_release(candidate.tag)
    if existing is not None:
        return same_commit_or_conflict(existing, commit)
    previous = previous_release_tag(mirror.tags(), candidate.version)
    notes = render_release_notes(candidate.version, mirror.log(previous, commit), previous_tag=previous)
    return releases.create_release(candidate.tag, commit, name=f"{config.app} {candidate.tag}", notes=notes)


@task(name="open-pull-request", **TRANSIENT_RETRIES)
def open_pull_request(config: PromoConfig, head: str, *, title: str, body: str) -> PullRequest:
    return forge(config).open_pull_request(head, config.app_repo.branch, title=title, body=body, draft=True)
