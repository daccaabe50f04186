"""OCI names: the distribution spec's grammar of repository names, tags and digests, and the digest of some bytes.

A name is checked before any request or build uses it, so a bad one fails as an ``InputError`` naming the rule, not
as a registry's refusal. The grammar is also why ECR insists on lowercase names.
"""

from __future__ import annotations

import hashlib
import re

from promo.errors import InputError

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
REPOSITORY_PATTERN = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_PATTERN = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
DIGEST_PATTERN = re.compile(r"(sha256):([a-f0-9]{64})|(sha512):([a-f0-9]{128})")


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def check_repository(repository: str) -> str:
    """``repository``, once it is a valid repository name."""
    if not REPOSITORY_PATTERN.fullmatch(repository):
        raise InputError(
            f"{repository!r} is not a valid repository name",
            "use lowercase letters, digits, '.', '_', '-' and '/' only (OCI and ECR require lowercase)",
        )
    return repository


def check_digest(digest: str) -> str:
    """The digest's algorithm, after checking that the digest is well formed."""
    match = DIGEST_PATTERN.fullmatch(digest)
    if match is None:
        raise InputError(f"{digest!r} is not a digest", "use sha256:<64 hex digits>")
    return match[1] or match[3]


def check_reference(reference: str) -> None:
    """A manifest reference is a tag or a digest."""
    if not (TAG_PATTERN.fullmatch(reference) or DIGEST_PATTERN.fullmatch(reference)):
        raise InputError(
            f"{reference!r} is neither a tag nor a digest",
            "use a tag of letters, digits, '.', '_' and '-' (at most 128), or sha256:<64 hex digits>",
        )


def reference_text(repository: str, reference: str) -> str:
    """``repository:tag`` or ``repository@digest``, as people write them."""
    return f"{repository}@{reference}" if ":" in reference else f"{repository}:{reference}"
