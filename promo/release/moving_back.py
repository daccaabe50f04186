"""Whether a promotion replaces a newer build: the gate says so first, and approving it then needs a reason.

``is_downgrade`` (versions.py) lets any RC of a base replace another, since the SHAs in their versions name commits,
not an order. So after a rollback in the source, an older build of one base can reach the next environment with no
word. The order is taken from where it is known: SemVer between different versions of the base ``X.Y.Z`` (a release
above its own RCs), the app repository's history between two builds of one base.
"""

from __future__ import annotations

from collections.abc import Iterable

from promo.gitops.mirror import Mirror
from promo.release.changes import MoveBack, version_commit
from promo.versions import is_release_candidate, sha_of, version_rank


def moving_back(mirror: Mirror, running: Iterable[str], incoming: str) -> MoveBack | None:
    """How ``incoming`` goes back from what the target's clusters run (``running``, "" for nothing), or None when it
    does not. Of several clusters' versions, a known move back is named before one that cannot be ordered, and the
    highest version before a lower one (builds of one base by name: any order, as long as it is always the same).
    ``mirror`` is the app repository, fetched."""
    others = sorted(set(running) - {"", incoming}, key=lambda version: (version_rank(version), version), reverse=True)
    found = [move for version in others if (move := _compare(mirror, version, incoming)) is not None]
    known = [move for move in found if move.needs_reason]
    return (known or found or [None])[0]


def _compare(mirror: Mirror, running: str, incoming: str) -> MoveBack | None:
    if version_rank(incoming) != version_rank(running):
        return MoveBack(incoming, running) if version_rank(incoming) < version_rank(running) else None
    if not (is_release_candidate(incoming) and is_release_candidate(running)):
        return None  # equal ranks that are no two RCs: one release, or pre-releases promo did not build
    older, newer = version_commit(mirror, incoming), version_commit(mirror, running)
    if older is None or newer is None:
        missing = incoming if older is None else running
        return MoveBack(incoming, running, unknown=f"{sha_of(missing)} is not in the app repository")
    if mirror.is_ancestor(newer, older):
        return None  # incoming's build contains running's: it moves forward
    if mirror.is_ancestor(older, newer):
        return MoveBack(incoming, running, behind=len(mirror.log(older, newer)))
    return MoveBack(incoming, running, unknown="neither build's commit contains the other in the app repository")
