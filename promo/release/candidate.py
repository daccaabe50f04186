"""What a release is made of, decided from the RC in the last pre-production environment, never from main."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from promo.errors import InputError
from promo.versions import (
    bump,
    is_release_candidate,
    is_release_tag,
    parse_version,
    release_of,
    sha_of,
)

BUMP_SUBJECT = "chore: bump chart version to {next} after release v{released}"


@dataclass(frozen=True)
class ReleaseCandidate:
    rc: str
    source: str

    @classmethod
    def of(cls, version: str, source: str) -> ReleaseCandidate:
        if not is_release_candidate(version):
            raise InputError(
                f"{source} runs {version}, which is not a release candidate X.Y.Z-rc.<sha>",
                f"promote a build into {source} first; only an RC that passed {source} is released",
            )
        return cls(version, source)

    @property
    def version(self) -> str:
        """The release: the RC's own base, so a bump on main between build and release cannot relabel it."""
        return release_of(self.rc)

    @property
    def tag(self) -> str:
        return f"v{self.version}"

    @property
    def short_sha(self) -> str:
        return sha_of(self.rc)


def previous_release_tag(tags: Iterable[str], version: str) -> str | None:
    """The newest ``vX.Y.Z`` tag below ``version``: where the release notes start."""
    below = [tag for tag in tags if is_release_tag(tag) and parse_version(tag[1:]) < parse_version(version)]
    return max(below, key=lambda tag: parse_version(tag[1:]), default=None)


def next_main_version(main_version: str, released: str) -> str | None:
    """The patch after ``released`` while main has not moved past it; None once it has (a re-run, or a hotfix)."""
    if parse_version(main_version).finalize_version() > parse_version(released):
        return None
    return bump(released, "patch")


def bump_subject(released: str, next_version: str) -> str:
    """Deterministic, so a re-run can find the bump it already made."""
    return BUMP_SUBJECT.format(next=next_version, released=released)
