"""`promo trace`: one change followed end to end, from the app commit to the release, read from git and the forge.

app commit -> image digest -> RC chart ``X.Y.Z-rc.<sha>`` -> every environment it reached -> release ``X.Y.Z`` and
its notes. The links are the ones promo writes anyway: an RC names the short SHA of its app commit, publish-dev's
GitOps commit carries the image and the RC chart's digest, and a release is the RC that ran in the environment before
prod (release-prod reads it there), so nothing else has to be stored.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from promo.clients import app_mirror, forge
from promo.config import PromoConfig
from promo.errors import InputError, NotFound
from promo.forges.base import Forge, Release
from promo.gitops.mirror import Mirror
from promo.gitops.history import Change, candidate_of, is_candidate
from promo.reports.history import app_history
from promo.versions import parse_version, release_of, sha_of

_SHA = re.compile(r"[0-9a-f]{7,40}")


@dataclass(frozen=True)
class AppCommit:
    sha: str
    time: datetime
    subject: str


@dataclass(frozen=True)
class Trace:
    app: str
    commit: AppCommit
    rc: str
    image: str | None  # pinned by digest, from publish-dev's GitOps commit
    rc_digest: str | None
    reached: tuple[Change, ...]  # oldest first: every change that put the RC (or its release) into an environment
    version: str | None  # the release X.Y.Z made from the RC; None while it is not released
    release_digest: str | None
    release: Release | None  # the forge's release: tag, notes, URL

    def as_json(self) -> dict[str, Any]:
        release = self.release
        return {
            "app": self.app,
            "commit": {"sha": self.commit.sha, "time": self.commit.time.isoformat(), "subject": self.commit.subject},
            "image": self.image,
            "rc": self.rc,
            "rc_digest": self.rc_digest,
            "reached": [change.as_json() for change in self.reached],
            "release": None
            if self.version is None
            else {
                "version": self.version,
                "chart_digest": self.release_digest,
                "tag": release.tag if release else None,
                "name": release.name if release else None,
                "url": release.url if release else None,
                "notes": release.notes if release else None,
            },
        }


def trace(config: PromoConfig, target: str) -> Trace:
    """Follow ``target`` (an RC, a release ``X.Y.Z``, or an app commit SHA, short or full) through the pipeline."""
    prod = config.environments[-1].name
    app_commits = app_mirror(config)
    app_commits.fetch()
    return trace_in(
        app_history(config),
        app_commits,
        forge(config, app_commits),
        target,
        app=config.app,
        prod=prod,
        source=config.source_of(prod).name,
    )


def trace_in(
    history: Sequence[Change], app_commits: Mirror, releases: Forge, target: str, *, app: str, prod: str, source: str
) -> Trace:
    """``trace`` over a history already read (newest first); ``source`` is the environment prod is released from."""
    rc = _candidate(history, app_commits, target.strip(), prod=prod, source=source)
    version = release_of(rc)
    released = [c for c in history if c.env == prod and _arrived(c, version) and candidate_of(history, c, source) == rc]
    reached = [c for c in history if _arrived(c, rc) or c in released]
    digests = [c.chart_digest for c in reversed(reached) if c.version == rc and c.chart_digest]
    images = [c.image for c in reversed(reached) if c.version == rc and c.image]
    sha = app_commits.resolve(sha_of(rc))
    record = app_commits.log_paths(sha, limit=1)[0]
    return Trace(
        app=app,
        commit=AppCommit(sha, record.committed_at, record.subject),
        rc=rc,
        image=images[0] if images else None,
        rc_digest=digests[0] if digests else None,
        reached=tuple(reversed(reached)),
        version=version if released else None,
        release_digest=next((c.chart_digest for c in reversed(released) if c.chart_digest), None),
        release=releases.find_release(f"v{version}") if released else None,
    )


def _candidate(history: Sequence[Change], app_commits: Mirror, target: str, *, prod: str, source: str) -> str:
    """The RC ``target`` names: itself, the one a release was made from, or the newest one built from a commit."""
    if _SHA.fullmatch(target.lower()):
        sha = app_commits.resolve(target.lower())
        built = [c.version for c in history if is_candidate(c.version) and sha.startswith(sha_of(c.version))]
        if not built:
            raise NotFound(
                f"commit {sha[:12]} of the app was never deployed: no X.Y.Z-rc.{sha[:7]} in the GitOps history",
                f"publish it with `promo publish-dev --sha {sha}`",
            )
        return str(built[0])
    try:
        parse_version(target)
    except InputError:
        raise InputError(
            f"{target!r} is neither a version nor a commit SHA",
            "pass X.Y.Z, X.Y.Z-rc.<sha> or an app commit SHA (7 to 40 hex digits)",
        ) from None
    if is_candidate(target):
        if not any(c.version == target for c in history):
            raise NotFound(f"{target} was never deployed into any environment", "check the version (`promo history`)")
        return target
    releases = [c for c in reversed(history) if c.env == prod and c.version == target]
    candidates = [rc for rc in (candidate_of(history, c, source) for c in releases) if rc]
    if not candidates:
        raise NotFound(
            f"{target} was never released to {prod} from an RC that ran in {source}",
            "check the version (`promo history prod`)",
        )
    return candidates[0]


def _arrived(change: Change, version: str) -> bool:
    """Whether ``change`` put ``version`` into a cluster that ran something else (a hand edit of another field did
    not)."""
    return any(move.after == version != move.before for move in change.moves)
