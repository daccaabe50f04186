"""The history of one app, read from the GitOps repository itself: no database keeps it, the log already does.

Every commit that touched ``<root>/<env>/<cluster>/<app>.yaml`` is one change per environment it moved, its versions
read from the manifests before and after it. promo's own commits say what they did: the subject names the kind
(``deploy``/``promote``/``release``/``rollback``), the body has one ``path: before -> after`` line per cluster, and git
trailers record the approver, the flow run and the chart. A commit counts as promo's only when its tree did what its
message says (``promo.gitops.attribution``); any other commit is a hand edit, whose message is not believed, so it has
no approver. Whether a change came up is the verdict recorded for its commit (``promo.gitops.verdicts``), believed only
when promo can prove it wrote it and it is about the version that commit deployed there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from promo.errors import InputError, PromoError
from promo.gitops.attribution import NOTHING, ManifestEdit, claim_of, doubt_of_promo_commit, message_trailers
from promo.gitops.mirror import CommitRecord, Mirror
from promo.gitops.manifests import manifest_path, read_target_revision
from promo.gitops.verdicts import UNTRUSTED, Verdict, read_verdicts_by_env
from promo.versions import is_release_candidate, release_of

Kind = Literal["deploy", "promote", "release", "rollback", "manual"]

_TRAILERS = {
    "Approved-By": "approver",
    "Approval-Comment": "approval_comment",
    "Override-Reason": "override_reason",
    "Flow-Run": "flow_run",
    "Chart-Digest": "chart_digest",
    "Image": "image",
    "Promoted-From": "promoted_from",
    "Rollback-Of": "rollback_of",
}


@dataclass(frozen=True)
class Move:
    """One cluster's chart version before and after a change ("" = nothing deployed)."""

    cluster: str
    before: str
    after: str


@dataclass(frozen=True)
class Change:
    """What one commit did to one environment, and what became of it."""

    commit: str
    time: datetime
    env: str
    kind: Kind
    moves: tuple[Move, ...]
    subject: str
    approver: str | None = None
    approval_comment: str | None = None
    override_reason: str | None = None
    flow_run: str | None = None
    chart_digest: str | None = None
    image: str | None = None
    promoted_from: str | None = None
    rollback_of: str | None = None
    verdict: Verdict | None = None  # as recorded: believed only through ``trusted_verdict``
    claimed_approver: str | None = None  # the Approved-By of a hand edit's message: shown, not believed
    manual_reason: str | None = None  # why a commit worded as promo's is a hand edit

    @property
    def uniform(self) -> bool:
        """Whether every cluster it touched moved from the same version to the same version."""
        return len({(move.before, move.after) for move in self.moves}) == 1

    @property
    def version(self) -> str | None:
        """The version the clusters it touched run after it; None when they were left on different ones."""
        afters = {move.after for move in self.moves}
        return afters.pop() if len(afters) == 1 else None

    @property
    def previous(self) -> str | None:
        """The version they ran before it; None when they ran different ones."""
        befores = {move.before for move in self.moves}
        return befores.pop() if len(befores) == 1 else None

    @property
    def verdict_doubt(self) -> str | None:
        """Why its verdict is not believed, in one line; None when it is, or when there is none.

        A record promo cannot prove it wrote, or one about another commit, environment or version than what this
        commit deployed there, says nothing about this change."""
        verdict = self.verdict
        if verdict is None:
            return None
        if not verdict.trusted:
            return verdict.untrusted_reason or "promo cannot prove it wrote this record"
        if verdict.gitops_commit != self.commit:
            return f"it is about commit {verdict.gitops_commit[:12]}, not {self.commit[:12]}"
        if verdict.env != self.env:
            return f"it is about {verdict.env or 'no environment'}, not {self.env}"
        if verdict.version != self.version:
            deployed = self.version or ("nothing" if self.version == "" else "different versions to its clusters")
            return f"it says {verdict.version or 'no version'}, but this commit deployed {deployed} to {self.env}"
        return None

    @property
    def trusted_verdict(self) -> Verdict | None:
        """Its verdict, when it is believed: what readiness, soak, rollbacks and metrics read."""
        return self.verdict if self.verdict_doubt is None else None

    @property
    def outcome(self) -> str:
        """verified, failed, deployed (recorded where nobody verifies), untrusted, or "-" when there is no record."""
        if self.verdict is None:
            return "-"
        return UNTRUSTED if self.verdict_doubt is not None else self.verdict.outcome

    @property
    def deploys_new_version(self) -> bool:
        """Whether it put a version into the environment that was not there, other than by undoing a change."""
        return self.kind != "rollback" and any(move.after and move.after != move.before for move in self.moves)

    def as_json(self) -> dict[str, Any]:
        verdict = self.verdict
        return {
            "commit": self.commit,
            "time": self.time.isoformat(),
            "env": self.env,
            "kind": self.kind,
            "version": self.version or None,  # null: nothing, or clusters left on different versions (see clusters)
            "from": self.previous or None,
            "clusters": [{"cluster": m.cluster, "from": m.before or None, "to": m.after or None} for m in self.moves],
            "approver": self.approver,
            "approval_comment": self.approval_comment,
            "override_reason": self.override_reason,
            "flow_run": self.flow_run,
            "chart_digest": self.chart_digest,
            "image": self.image,
            "promoted_from": self.promoted_from,
            "rollback_of": self.rollback_of,
            "claimed_approver": self.claimed_approver,
            "manual_reason": self.manual_reason,
            "verdict": None
            if verdict is None
            else {
                "outcome": self.outcome,
                "recorded_outcome": verdict.outcome,
                "reason": verdict.reason,
                "checked_at": verdict.checked_at.isoformat(),
                "untrusted_reason": self.verdict_doubt,
            },
            "subject": self.subject,
        }


TABLE_HEADERS = (
    "time (UTC)",
    "env",
    "clusters",
    "kind",
    "version",
    "from -> to",
    "approver",
    "flow run",
    "verdict",
    "note",
)


def table_row(change: Change) -> list[str]:
    """``change`` as a row under ``TABLE_HEADERS``: a rollback and an override say so in the note."""
    if change.uniform:
        moved = f"{change.previous or NOTHING} -> {change.version or NOTHING}"
    else:
        moved = ", ".join(
            f"{move.cluster}: {move.before or NOTHING} -> {move.after or NOTHING}" for move in change.moves
        )
    approver = change.approver or ("unknown (manual edit)" if change.kind == "manual" else "-")
    if change.claimed_approver:
        approver = f"unknown (manual edit; says Approved-By: {change.claimed_approver}, not believed)"
    notes = [f"rollback of {change.rollback_of}" if change.rollback_of else ""]
    notes.append(f"override: {change.override_reason}" if change.override_reason else "")
    notes.append(f"not promo's: {change.manual_reason}" if change.manual_reason else "")
    doubt = change.verdict_doubt
    return [
        f"{change.time:%Y-%m-%d %H:%M}",
        change.env,
        ",".join(move.cluster for move in change.moves),
        change.kind,
        NOTHING if change.version == "" else change.version or "(clusters differ)",
        moved,
        f"{approver}: {change.approval_comment}" if change.approval_comment else approver,
        change.flow_run or "-",
        f"{UNTRUSTED}: {doubt}" if doubt is not None else change.outcome,
        "; ".join(note for note in notes if note) or "-",
    ]


def read_history(
    mirror: Mirror,
    ref: str,
    app: str,
    clusters: Mapping[str, Sequence[str]],
    *,
    root: str,
    env: str | None = None,
) -> list[Change]:
    """Every change of ``app`` at ``ref``, newest first, in the environments of ``clusters`` (env -> its clusters;
    only ``env`` when given), as last fetched by ``mirror``.

    Pass every environment's clusters even for one ``env``: whether a commit is promo's depends on all it changed."""
    envs = [env] if env is not None else list(clusters)
    paths = {
        str(manifest_path(name, cluster, app, root)): (name, cluster) for name in clusters for cluster in clusters[name]
    }
    verdicts = read_verdicts_by_env(mirror, app)
    changes = []
    for record in mirror.log_paths(ref, [path for path, (name, _) in paths.items() if name in envs]):
        edits = _edits_in_trees(mirror, record.sha, paths)
        kind, fields, manual_reason = _attribute(record, app, edits, paths)
        for name in envs:
            env_moves = tuple(
                Move(edit.cluster, edit.before, edit.after) for edit in edits if edit.env == name and _moves(edit)
            )
            if env_moves:
                verdict = verdicts.get(name, {}).get(record.sha)
                changes.append(_change(record, name, kind, env_moves, fields, verdict, manual_reason))
    return changes


def _attribute(
    record: CommitRecord, app: str, edits: Sequence[ManifestEdit], paths: Mapping[str, tuple[str, str]]
) -> tuple[Kind, dict[str, str], str | None]:
    """The kind of a commit, the fields of its message that are believed, and why a commit worded as promo's is a
    hand edit (None when it is not worded as one, or when it is promo's)."""
    trailers = message_trailers(record.body)
    claim = claim_of(record.subject, app)
    doubt = None if claim is None else doubt_of_promo_commit(claim, record.body, trailers, edits, paths)
    if claim is None or doubt is not None:
        claimed = {"claimed_approver": trailers["Approved-By"]} if "Approved-By" in trailers else {}
        return "manual", claimed, doubt
    fields = {field: trailers[key] for key, field in _TRAILERS.items() if key in trailers}
    return cast(Kind, claim.kind), fields, None


def _change(
    record: CommitRecord,
    env: str,
    kind: Kind,
    moves: tuple[Move, ...],
    fields: dict[str, str],
    verdict: Verdict | None,
    manual_reason: str | None,
) -> Change:
    return Change(
        commit=record.sha,
        time=record.committed_at,
        env=env,
        kind=kind,
        moves=moves,
        subject=record.subject,
        verdict=verdict,
        manual_reason=manual_reason,
        **fields,
    )


def _edits_in_trees(mirror: Mirror, commit: str, paths: Mapping[str, tuple[str, str]]) -> list[ManifestEdit]:
    """What a commit did to each of the app's manifests it changed, read from the files before and after it."""
    try:
        parent: str | None = mirror.resolve(f"{commit}^")
    except PromoError:  # a repository's first commit
        parent = None
    edits = []
    for path, (env, cluster) in paths.items():
        before = mirror.read_file(parent, path) if parent is not None else None
        after = mirror.read_file(commit, path)
        if before != after:
            versions = _revision(before, path), _revision(after, path)
            edits.append(ManifestEdit(path, env, cluster, before, after, *versions))
    return edits


def _moves(edit: ManifestEdit) -> bool:
    """Whether an edit is a change of the app: a hand edit of another field is (it stays on its version); laying out
    a manifest with no version yet (a repository's first commit) deployed nothing and is not."""
    return not (edit.before_text is None and edit.after == "")


def _revision(text: str | None, path: str) -> str:
    """The chart version a manifest names; a hand edit may have left it unreadable, which history shows as such."""
    if text is None:
        return ""
    try:
        return read_target_revision(text, source=path)
    except PromoError:
        return "<unreadable>"


def candidate_of(history: Sequence[Change], change: Change, source: str) -> str | None:
    """The release candidate ``change`` deployed: its own version when that is an RC; for a release ``X.Y.Z``, the
    newest ``X.Y.Z-rc.*`` that ``source`` (the environment it was released from) ran before it; else None."""
    if is_candidate(change.version) or not change.version:
        return change.version
    position = next(index for index, each in enumerate(history) if each is change)
    for earlier in history[position + 1 :]:  # history is newest first
        if earlier.env == source and is_candidate(earlier.version) and release_of(earlier.version) == change.version:
            return earlier.version
    return None


def is_candidate(version: str | None) -> bool:
    """Whether ``version`` is an RC; a hand-written version that is not SemVer is simply not one."""
    try:
        return bool(version) and is_release_candidate(version)
    except InputError:
        return False
