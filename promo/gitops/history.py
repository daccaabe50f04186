"""The history of one app, read from the GitOps repository itself: no database keeps it, the log already does.

Every commit that touched ``<root>/<env>/<cluster>/<app>.yaml`` is one change per environment it moved. promo's own
commits say what they did: the subject names the kind (``deploy``/``promote``/``release``/``rollback``), the body has
one ``path: before -> after`` line per cluster, and git trailers record the approver, the flow run and the chart. A
commit promo did not write (someone edited a manifest by hand) is still a change: its versions are read from the
manifests before and after it, and its message is not trusted, so it has no approver. Whether a change came up is the
verdict recorded for its commit (``promo.gitops.verdicts``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from promo.clients import gitops_repo
from promo.config import PromoConfig
from promo.errors import InputError, PromoError
from promo.gitops.mirror import CommitRecord, Mirror
from promo.gitops.manifests import manifest_path, read_target_revision
from promo.gitops.verdicts import Verdict, read_verdicts_by_env
from promo.release.versions import is_release_candidate, release_of

Kind = Literal["deploy", "promote", "release", "rollback", "manual"]
NOTHING = "<none>"  # how a commit body writes "no version yet"

_PROMO_SUBJECT = re.compile(r"^(?P<kind>deploy|promote|release|rollback)\((?P<app>[a-z0-9-]+)\):")
_MOVE_LINE = re.compile(r"^\s+(?P<path>\S+): (?P<before>\S+) -> (?P<after>\S+)$")
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
    verdict: Verdict | None = None

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
    def outcome(self) -> str:
        """verified, failed, or "-" when nobody checked."""
        return self.verdict.outcome if self.verdict else "-"

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
            "verdict": None
            if verdict is None
            else {"outcome": verdict.outcome, "reason": verdict.reason, "checked_at": verdict.checked_at.isoformat()},
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
    notes = [f"rollback of {change.rollback_of}" if change.rollback_of else ""]
    notes.append(f"override: {change.override_reason}" if change.override_reason else "")
    return [
        f"{change.time:%Y-%m-%d %H:%M}",
        change.env,
        ",".join(move.cluster for move in change.moves),
        change.kind,
        NOTHING if change.version == "" else change.version or "(clusters differ)",
        moved,
        f"{approver}: {change.approval_comment}" if change.approval_comment else approver,
        change.flow_run or "-",
        change.outcome,
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
    only ``env`` when given), as last fetched by ``mirror``."""
    envs = [env] if env is not None else list(clusters)
    paths = {
        str(manifest_path(name, cluster, app, root)): (name, cluster) for name in envs for cluster in clusters[name]
    }
    verdicts = read_verdicts_by_env(mirror, app)
    changes = []
    for record in mirror.log_paths(ref, list(paths)):
        subject = _PROMO_SUBJECT.match(record.subject)
        kind = cast(Kind, subject["kind"]) if subject and subject["app"] == app else "manual"
        written_by_promo = kind != "manual"
        moves = (_moves_in_body(record.body, paths) if written_by_promo else None) or _moves_in_trees(
            mirror, record.sha, paths
        )
        fields = _trailers(record.body) if written_by_promo else {}
        for name in envs:
            env_moves = tuple(move for (move_env, move) in moves if move_env == name)
            if env_moves:
                verdict = verdicts.get(name, {}).get(record.sha)
                changes.append(_change(record, name, kind, env_moves, fields, verdict))
    return changes


def _change(
    record: CommitRecord, env: str, kind: Kind, moves: tuple[Move, ...], fields: dict[str, str], verdict: Verdict | None
) -> Change:
    return Change(
        commit=record.sha,
        time=record.committed_at,
        env=env,
        kind="rollback" if "rollback_of" in fields else kind,
        moves=moves,
        subject=record.subject,
        verdict=verdict,
        **fields,
    )


def _moves_in_body(body: str, paths: Mapping[str, tuple[str, str]]) -> list[tuple[str, Move]]:
    """The ``path: before -> after`` lines promo writes, for this app's manifests."""
    moves = []
    for line in body.splitlines():
        match = _MOVE_LINE.match(line)
        if match and match["path"] in paths:
            env, cluster = paths[match["path"]]
            before, after = (value if value != NOTHING else "" for value in (match["before"], match["after"]))
            moves.append((env, Move(cluster, before, after)))
    return moves


def _moves_in_trees(mirror: Mirror, commit: str, paths: Mapping[str, tuple[str, str]]) -> list[tuple[str, Move]]:
    """What a commit did to each manifest it changed, read from the files before and after it.

    A hand edit of another field is still shown (it stays on its version); laying out a manifest with no version
    yet (a repository's first commit) deployed nothing and is no change of the app."""
    moves = []
    for path, (env, cluster) in paths.items():
        before, after = _file_at(mirror, f"{commit}^", path), _file_at(mirror, commit, path)
        if before == after or (before is None and _revision(after, path) == ""):
            continue
        moves.append((env, Move(cluster, _revision(before, path), _revision(after, path))))
    return moves


def _file_at(mirror: Mirror, ref: str, path: str) -> str | None:
    try:
        return mirror.read_file(ref, path)
    except PromoError:  # the parent of a repository's first commit
        return None


def _revision(text: str | None, path: str) -> str:
    """The chart version a manifest names; a hand edit may have left it unreadable, which history shows as such."""
    if text is None:
        return ""
    try:
        return read_target_revision(text, source=path)
    except PromoError:
        return "<unreadable>"


def _trailers(body: str) -> dict[str, str]:
    """The known trailers of a promo commit (its last paragraph), by ``Change`` field name."""
    paragraph = body.strip().rsplit("\n\n", 1)[-1]
    fields = {}
    for line in paragraph.splitlines():
        key, separator, value = line.partition(": ")
        if separator and key in _TRAILERS and value.strip():
            fields[_TRAILERS[key]] = value.strip()
    return fields


def app_history(config: PromoConfig, env: str | None = None) -> list[Change]:
    """Every change of the configured app (in ``env`` only, when given), newest first, from a fresh fetch."""
    names = [config.environment(env).name] if env is not None else config.environment_names
    gitops = gitops_repo(config)
    gitops.mirror.fetch()
    clusters = {settings.name: settings.clusters for settings in config.environments if settings.name in names}
    return read_history(gitops.mirror, gitops.branch, config.app, clusters, root=gitops.root)


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
