"""The GitOps repository: which chart version each environment runs, and the one commit that changes it.

An environment's version is the ``targetRevision`` of the app's Application manifest in each of its clusters
(``<root>/<env>/<cluster>/<app>.yaml``). Every read starts from a fresh fetch, so a promotion never acts on a version
that was already replaced. A write is one commit touching only those ``targetRevision`` values, with git trailers that
record where the version came from and who approved it; it is pushed with ``Mirror.update_branch``, so concurrent
promotions re-apply their edit on each other's commits instead of overwriting them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from git import Actor

from promo.errors import ConflictError, InputError, NotFound
from promo.git import DEFAULT_ATTEMPTS, DEFAULT_AUTHOR, Mirror, Snapshot
from promo.manifests import (
    DEFAULT_ROOT,
    diff_manifest,
    manifest_path,
    read_target_revision,
    set_target_revision,
    validate_name,
)


@dataclass(frozen=True)
class Trailers:
    """The audit record of a promotion, as git trailers (``Promoted-From: dev``...); None or blank values are left out.

    Each value is made one printable line of at most ``MAX_VALUE_LENGTH`` characters, so free text such as the
    approver's comment can neither forge another trailer nor bury the record."""

    MAX_VALUE_LENGTH = 200  # not a field: no annotation

    promoted_from: str | None = None
    chart_version: str | None = None
    chart_digest: str | None = None
    image: str | None = None
    flow_run: str | None = None
    approved_by: str | None = None
    approval_comment: str | None = None

    def render(self) -> str:
        lines = []
        for field in dataclasses.fields(self):
            value = self._one_line(getattr(self, field.name))
            if value:
                key = "-".join(word.capitalize() for word in field.name.split("_"))
                lines.append(f"{key}: {value}")
        return "\n".join(lines)

    @classmethod
    def _one_line(cls, value: object) -> str:
        if value is None:
            return ""
        text = " ".join("".join(char if char.isprintable() else " " for char in str(value)).split())
        if len(text) <= cls.MAX_VALUE_LENGTH:
            return text
        return text[: cls.MAX_VALUE_LENGTH - 1] + "…"


@dataclass(frozen=True)
class ManifestChange:
    path: str
    before: str
    after: str


@dataclass(frozen=True)
class Plan:
    """What a promotion would change, for the approval screen: only manifests not yet at the version.

    ``current`` is what every cluster of the environment runs now (cluster -> targetRevision, "" for nothing yet):
    the state the approver is shown, which a write compares against before it changes anything."""

    changes: tuple[ManifestChange, ...]
    diff: str
    already_current: bool
    current: Mapping[str, str]


@dataclass(frozen=True)
class SetVersionResult:
    """``commit`` is None when every target already held the version; ``summary`` says which case it was."""

    commit: str | None
    changed_paths: tuple[str, ...]
    diff: str
    already_current: bool
    attempts: int
    summary: str


class GitOpsRepo:
    """Argo CD Application manifests in a GitOps repository, read and written through a cached mirror."""

    def __init__(
        self,
        url: str,
        branch: str,
        cache_dir: Path,
        root: str = DEFAULT_ROOT,
        *,
        author: Actor = DEFAULT_AUTHOR,
        max_attempts: int = DEFAULT_ATTEMPTS,
    ) -> None:
        self.branch = branch
        self.root = root
        self.author = author
        self.max_attempts = max_attempts
        self.mirror = Mirror.open(url, cache_dir)

    def environment_version(
        self, app: str, env: str, clusters: Sequence[str], *, snapshot: Snapshot | None = None
    ) -> str:
        """The chart version ``app`` runs in ``env``: the same in every cluster, or a ConflictError naming them.

        Without ``snapshot`` the branch is fetched first; a caller reading several environments passes one
        ``snapshot()`` so they are read from one commit with one fetch."""
        manifests = self._manifests(snapshot or self.snapshot(), app, env, clusters)
        versions = {cluster: read_target_revision(text, source=path) for cluster, (path, text) in manifests.items()}
        if set(versions.values()) == {""}:
            raise NotFound(
                f"{app} has no version in {env} yet (targetRevision is empty in {', '.join(versions)})",
                f"deploy a version into {env} first: promote it from the environment before, or publish to dev",
            )
        if len(set(versions.values())) > 1:
            found = ", ".join(f"{cluster}={version or '<none>'}" for cluster, version in versions.items())
            raise ConflictError(
                f"the clusters of {env} run different versions of {app}: {found}",
                f"promote one version into {env} to align them, or fix the manifests by hand",
            )
        return next(iter(versions.values()))

    def snapshot(self) -> Snapshot:
        """The branch as it is on the remote now (fetched)."""
        return self.mirror.snapshot(self.branch)

    def plan(self, app: str, env: str, clusters: Sequence[str], version: str) -> Plan:
        return self._plan(self.snapshot(), app, env, clusters, version)

    def set_version(
        self, app: str, env: str, clusters: Sequence[str], version: str, *, subject: str, trailers: Trailers
    ) -> SetVersionResult:
        """Set ``app`` in every cluster of ``env`` to ``version`` in one pushed commit; no commit if already there."""
        subject = " ".join(subject.split())
        if not subject:
            raise InputError("the commit subject is empty", f"describe the change, e.g. 'promote {app} to {env}'")
        plans: list[Plan] = []  # the plan of each attempt; the last one is what was pushed

        def edit(snapshot: Snapshot) -> dict[str, str]:
            plans.append(self._plan(snapshot, app, env, clusters, version))
            return {change.path: change.after for change in plans[-1].changes}

        def message(_changes: Mapping[str, str]) -> str:
            body = [f"Set the chart version of {app} in {env} to {version}:"]
            for change in plans[-1].changes:
                body.append(f"  {change.path}: {read_target_revision(change.before) or '<none>'} -> {version}")
            return "\n\n".join(part for part in (subject, "\n".join(body), trailers.render()) if part) + "\n"

        result = self.mirror.update_branch(
            self.branch, edit, message, author=self.author, max_attempts=self.max_attempts
        )
        plan = plans[-1]
        summary = (
            f"{app} in {env} set to {version} in {result.commit[:12]}"
            if result.commit
            else f"{app} in {env} is already at {version}"
        )
        return SetVersionResult(
            result.commit, result.changed_paths, plan.diff, plan.already_current, result.attempts, summary
        )

    def clusters_on_disk(self, env: str) -> list[str]:
        """The cluster directories of ``env`` in the repository, to compare with the clusters promo.yaml lists."""
        path = f"{self.root}/{validate_name('environment', env)}"
        return [entry.name for entry in self.mirror.snapshot(self.branch).list_dir(path) if entry.is_dir]

    def _plan(self, snapshot: Snapshot, app: str, env: str, clusters: Sequence[str], version: str) -> Plan:
        changes = []
        current = {}
        for cluster, (path, before) in self._manifests(snapshot, app, env, clusters).items():
            current[cluster] = read_target_revision(before, source=path)
            after = set_target_revision(before, version, source=path)
            if after != before:
                changes.append(ManifestChange(path, before, after))
        diff = "".join(diff_manifest(change.path, change.before, change.after) for change in changes)
        return Plan(tuple(changes), diff, already_current=not changes, current=current)

    def _manifests(
        self, snapshot: Snapshot, app: str, env: str, clusters: Sequence[str]
    ) -> dict[str, tuple[str, str]]:
        """cluster -> (path, text) of the app's manifest in each cluster of ``env``; every one must exist."""
        if not clusters:
            raise InputError(f"no clusters given for {env}", f"list the clusters of {env} in promo.yaml")
        manifests = {}
        for cluster in dict.fromkeys(clusters):
            path = str(manifest_path(env, cluster, app, self.root))
            text = snapshot.read_file(path)
            if text is None:
                raise NotFound(
                    f"{path} does not exist on {self.branch} of {self.mirror.display_url}",
                    f"add the Application manifest of {app} for cluster {cluster}, "
                    f"or fix the clusters of {env} in promo.yaml",
                )
            manifests[cluster] = (path, text)
        return manifests
