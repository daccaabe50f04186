"""Hotfixes: a branch from a release tag with the patch bumped, refused wherever it would collide."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from promo.errors import ConflictError, NotFound
from promo.versions import bump, parse_release_tag, parse_version


@dataclass(frozen=True)
class HotfixPlan:
    tag: str
    released: str
    version: str

    @classmethod
    def of(cls, tag: str) -> HotfixPlan:
        released = parse_release_tag(tag)
        return cls(tag, released, bump(released, "patch"))

    @property
    def branch(self) -> str:
        """``hotfix-X-Y-Z``: the seed's name, which publish-dev's push trigger matches with ``hotfix-*``."""
        return "hotfix-" + self.version.replace(".", "-")

    @property
    def version_tag(self) -> str:
        return f"v{self.version}"

    @property
    def start_subject(self) -> str:
        """The subject of the branch's first commit: how a re-run recognises a branch promo started itself."""
        return f"chore: start hotfix {self.version} from {self.tag}"


def check_hotfix(
    plan: HotfixPlan,
    tags: Mapping[str, str],
    branches: Mapping[str, str],
    main_version: str,
    *,
    started_by_promo: bool = False,
) -> str:
    """The commit the hotfix starts from, once nothing collides: the tag exists, its next patch is free, and
    main will release something above it (else the hotfix and main's next release would share a version).

    A branch that promo itself started from this tag (``started_by_promo``: its only commit is promo's start commit)
    is no collision: it is a hotfix run that stopped before its pull request, and the re-run finishes it."""
    if plan.tag not in tags:
        raise NotFound(f"release tag {plan.tag} does not exist", "pick a release from `promo releases`")
    if plan.version_tag in tags:
        raise ConflictError(
            f"{plan.version} is already released as {plan.version_tag}",
            f"hotfix the newest release instead: promo hotfix {plan.version_tag}",
        )
    if plan.branch in branches and not started_by_promo:
        raise ConflictError(
            f"branch {plan.branch} already exists",
            f"use it: push the fix to {plan.branch} and publish-dev builds it",
        )
    if parse_version(main_version).finalize_version() <= parse_version(plan.version):
        raise ConflictError(
            f"main will release {main_version} next, which is not above the hotfix {plan.version}",
            "bump main's minor first (promo bump-version minor), then start the hotfix",
        )
    return tags[plan.tag]
