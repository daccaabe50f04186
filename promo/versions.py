"""Chart versions: release candidates ``{base}-rc.{sha}``, releases ``X.Y.Z`` and bumps, all SemVer 2.0.

A short SHA made only of digits is a numeric pre-release identifier: invalid with a leading zero
(``0412345``) and ordered below every alphanumeric one. So the SHA part is lengthened until it holds a
letter, which keeps every RC valid and comparable for every commit.
"""

from __future__ import annotations

import re
from typing import Literal

import semver

from promo.errors import InputError

MIN_SHA_LENGTH = 7
BumpPart = Literal["patch", "minor", "major"]
BUMP_PARTS: tuple[BumpPart, ...] = ("patch", "minor", "major")

_FULL_SHA = re.compile(r"^[0-9a-f]{7,64}$")
_RELEASE_TAG = re.compile(r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


def parse_version(text: str, *, what: str = "version") -> semver.Version:
    try:
        return semver.Version.parse(text)
    except (ValueError, TypeError):
        raise InputError(
            f"{what} {text!r} is not SemVer 2.0",
            "use MAJOR.MINOR.PATCH, e.g. 1.2.0 (a release) or 1.2.0-rc.abc1234 (a build)",
        ) from None


def parse_base_version(text: str, *, what: str = "Chart.yaml version") -> semver.Version:
    """A base version is a plain ``X.Y.Z``: the RC suffix is added by promo, never written by hand."""
    version = parse_version(str(text), what=what)
    if version.prerelease or version.build:
        raise InputError(
            f"{what} {text!r} has a pre-release or build part",
            f"set it to the plain base version {version.finalize_version()} and let promo add -rc.<sha>",
        )
    return version


def short_sha(sha: str) -> str:
    """The shortest prefix (7 at least) that holds a letter, so it is a valid alphanumeric identifier."""
    sha = sha.strip().lower()
    if not _FULL_SHA.fullmatch(sha):
        raise InputError(f"{sha!r} is not a git commit SHA", "pass the full 40-character SHA (git rev-parse HEAD)")
    for length in range(MIN_SHA_LENGTH, len(sha) + 1):
        prefix = sha[:length]
        if not prefix.isdigit():
            return prefix
    raise InputError(
        f"commit {sha} is made only of digits and cannot name a SemVer pre-release",
        "pass the full 40-character SHA, or make a new commit",
    )


def rc_version(base: str, sha: str) -> str:
    """``{base}-rc.{short sha}``, e.g. ``0.2.0-rc.abc1234``."""
    version = parse_base_version(base).replace(prerelease=f"rc.{short_sha(sha)}")
    return str(version)


def is_release_candidate(version: str) -> bool:
    parsed = parse_version(version)
    return parsed.build is None and bool(parsed.prerelease) and parsed.prerelease.startswith("rc.")


def release_of(rc: str) -> str:
    """The release a candidate becomes: its base, taken from the RC itself, never from main."""
    if not is_release_candidate(rc):
        raise InputError(f"{rc!r} is not a release candidate", "promote an X.Y.Z-rc.<sha> build into it first")
    return str(parse_version(rc).finalize_version())


def sha_of(rc: str) -> str:
    """The (short) commit SHA an RC was built from."""
    if not is_release_candidate(rc):
        raise InputError(f"{rc!r} is not a release candidate", "expected X.Y.Z-rc.<sha>")
    return parse_version(rc).prerelease.removeprefix("rc.")


def is_downgrade(running: str, incoming: str, *, floor: str | None = None) -> bool:
    """Whether moving an environment from ``running`` to ``incoming`` goes back: promo never does that unasked.

    Versions rank by their base ``X.Y.Z``, a release above its own RCs. RCs of one base rank equal: their SHAs name
    commits, not an order (SemVer would compare the SHA text), so any build of a base may replace another. Nothing
    deployed (``""``) is below everything. A lower base is no downgrade while it still ranks above ``floor``, what
    the last environment (prod) runs: that is a hotfix ``X.Y.(Z+1)-rc.*`` on its way to prod through environments
    running main's higher RCs. The last environment itself passes no floor, so prod never goes back.
    """
    if version_rank(incoming) >= version_rank(running):
        return False
    return floor is None or version_rank(incoming) <= version_rank(floor)


def version_rank(version: str) -> tuple[semver.Version, int]:
    """The order of ``is_downgrade``: ``(base, 1)`` for a release, ``(base, 0)`` for any pre-release of it, and
    ``""`` (nothing deployed) below every version."""
    if not version:
        return semver.Version(0, 0, 0), -1
    parsed = parse_version(version)
    return parsed.finalize_version(), 0 if parsed.prerelease else 1


def check_bump_part(part: str) -> BumpPart:
    if part not in BUMP_PARTS:
        raise InputError(f"unknown version part {part!r}", f"use one of: {', '.join(BUMP_PARTS)}")
    return part  # type: ignore[return-value]


def bump(version: str, part: str) -> str:
    """Bump one part. A pre-release is first finalised: bumping ``1.3.0-rc.1``'s patch gives ``1.3.1``."""
    check_bump_part(part)
    parsed = parse_version(version).finalize_version()
    return str(parsed.next_version(part=part))


def is_release_tag(tag: str) -> bool:
    return _RELEASE_TAG.fullmatch(tag) is not None


def parse_release_tag(tag: str) -> str:
    """``vX.Y.Z`` -> ``X.Y.Z``; no other form is a release tag."""
    match = _RELEASE_TAG.fullmatch(tag)
    if not match:
        raise InputError(f"{tag!r} is not a release tag", "use the form vX.Y.Z, e.g. v1.4.2")
    return tag[1:]

