"""Whether a GitOps commit worded as promo's is promo's: its subject and trailers must say what its tree did.

Anyone who can push to the GitOps branch can write ``promote(app): ...`` and ``Approved-By: carol`` into a message.
promo's own write (``GitOpsRepo.set_version``) is narrow: it sets the ``targetRevision`` of the app's manifests in the
one environment its subject names, every one to its ``Chart-Version``, and lists each move in its body. A commit whose
tree did anything else (another version, another environment, another field, a file added or removed) is a hand edit
whatever its message says: history shows it as one, and nothing in its message (approver, flow run, image) is
believed. The check needs no secret; it cannot tell promo's write from a faithful copy of one, which only claims what
it really did.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from promo.errors import PromoError
from promo.gitops.manifests import set_target_revision

NOTHING = "<none>"  # how a commit body writes "no version yet"

_SUBJECT = re.compile(
    r"^(?:promote\((?P<promote_app>[a-z0-9-]+)\): (?P<source>\S+) -> (?P<target>\S+) (?P<promoted>\S+)"
    r"|(?P<kind>deploy|release|rollback)\((?P<app>[a-z0-9-]+)\): (?P<env>\S+) -> (?P<version>\S+))$"
)
_MOVE_LINE = re.compile(r"^\s+(?P<path>\S+): (?P<before>\S+) -> (?P<after>\S+)$")


@dataclass(frozen=True)
class ManifestEdit:
    """What one commit did to one of the app's manifests: its text and chart version before and after.

    ``before_text``/``after_text`` are None where the file did not exist; ``before``/``after`` are the versions (""
    for none, ``<unreadable>`` where the file names none promo can read)."""

    path: str
    env: str
    cluster: str
    before_text: str | None
    after_text: str | None
    before: str
    after: str


@dataclass(frozen=True)
class Claim:
    """What a message worded as promo's says it did: its kind, environment, version and source."""

    kind: str
    env: str
    version: str
    source: str | None  # the environment a promotion names in its subject


def claim_of(subject: str, app: str) -> Claim | None:
    """The claim of a subject promo writes for ``app``; None for any other subject."""
    match = _SUBJECT.match(subject)
    if match is None:
        return None
    if match["promote_app"] is not None:
        if match["promote_app"] != app:
            return None
        return Claim("promote", match["target"], match["promoted"], match["source"])
    if match["app"] != app:
        return None
    return Claim(match["kind"], match["env"], match["version"], None)


def message_trailers(body: str) -> dict[str, str]:
    """``Key: value`` lines of a message's last paragraph (where git trailers go), as written."""
    paragraph = body.strip().rsplit("\n\n", 1)[-1]
    trailers = {}
    for line in paragraph.splitlines():
        key, separator, value = line.partition(": ")
        if separator and value.strip() and " " not in key:
            trailers[key] = value.strip()
    return trailers


def doubt_of_promo_commit(
    claim: Claim, body: str, trailers: Mapping[str, str], edits: Sequence[ManifestEdit], paths: Mapping[str, object]
) -> str | None:
    """Why a commit worded as ``claim`` is not promo's write, in one line; None when its tree did what it says.

    ``edits`` are every manifest of the app (``paths``, in every environment) the commit changed."""
    version = trailers.get("Chart-Version")
    if version is None:
        return "it has no Chart-Version trailer"
    if version != claim.version:
        return f"its subject says {claim.version} but its Chart-Version trailer says {version}"
    doubt = _doubt_of_trailers(claim, trailers)
    if doubt is not None:
        return doubt
    if not edits:
        return f"it changed no manifest of the app in {claim.env}"
    for edit in edits:
        doubt = _doubt_of_edit(claim, version, trailers.get("Rollback-Of"), edit)
        if doubt is not None:
            return doubt
    listed = _moves_in_body(body, paths)
    made = {edit.path: (edit.before, edit.after) for edit in edits}
    if listed != made:
        return "the manifest moves its message lists are not the ones its tree made"
    return None


def _doubt_of_trailers(claim: Claim, trailers: Mapping[str, str]) -> str | None:
    promoted_from = trailers.get("Promoted-From")
    if claim.kind == "promote" and promoted_from != claim.source:
        said = promoted_from or "nothing"
        return f"its subject promotes from {claim.source} but its Promoted-From trailer says {said}"
    if claim.kind == "release" and promoted_from is None:
        return "a release without a Promoted-From trailer"
    if claim.kind in ("deploy", "rollback") and promoted_from is not None:
        return f"a {claim.kind} with a Promoted-From trailer"
    if (claim.kind == "rollback") != ("Rollback-Of" in trailers):
        return "a rollback without a Rollback-Of trailer" if claim.kind == "rollback" else "a Rollback-Of trailer"
    return None


def _doubt_of_edit(claim: Claim, version: str, rollback_of: str | None, edit: ManifestEdit) -> str | None:
    if edit.env != claim.env:
        return f"it changed {edit.path}, outside {claim.env}"
    if edit.before_text is None or edit.after_text is None:
        return f"it {'added' if edit.before_text is None else 'removed'} {edit.path}"
    if edit.after != version:
        return f"it set {edit.path} to {edit.after or NOTHING}, not to its Chart-Version {version}"
    if edit.before == version:
        return f"it changed {edit.path} but not its version"
    try:
        only_the_version = set_target_revision(edit.before_text, version, source=edit.path) == edit.after_text
    except PromoError:
        only_the_version = False
    if not only_the_version:
        return f"it changed more than the targetRevision of {edit.path}"
    if rollback_of is not None and edit.before != rollback_of:
        return f"its Rollback-Of trailer says {rollback_of} but {edit.path} ran {edit.before or NOTHING} before it"
    return None


def _moves_in_body(body: str, paths: Mapping[str, object]) -> dict[str, tuple[str, str]]:
    """path -> (before, after) of the ``path: before -> after`` lines promo writes, for the app's manifests."""
    moves = {}
    for line in body.splitlines():
        match = _MOVE_LINE.match(line)
        if match and match["path"] in paths:
            before, after = (value if value != NOTHING else "" for value in (match["before"], match["after"]))
            moves[match["path"]] = (before, after)
    return moves
