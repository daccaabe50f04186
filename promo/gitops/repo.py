"""The GitOps repository: which chart version each environment runs, and the one commit that changes it.

An environment's version is the ``targetRevision`` of the app's Application manifest in each of its clusters
(``<root>/<env>/<cluster>/<app>.yaml``). Every read starts from a fresh fetch, so a promotion never acts on a version
that was already replaced. A write is one commit touching only those ``targetRevision`` values, with git trailers that
record where the version came from and who approved it; it is pushed with ``Mirror.update_branch``, so concurrent
promotions re-apply their edit on each other's commits instead of overwriting them. Each attempt first compares every
cluster with what the approver was shown: a target that moved since, or a version lower than what runs, is refused,
so a write changes exactly what was approved, or nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from git import Actor

from promo.errors import ConflictError, InputError, NotFound, StaleBranch
from promo.gitops.mirror import DEFAULT_AUTHOR, Mirror, RetryBudget, Snapshot, WriteLock
from promo.gitops.manifests import (
    DEFAULT_ROOT,
    diff_manifest,
    manifest_path,
    read_target_revision,
    set_target_revision,
    validate_name,
)
from promo.versions import is_downgrade, parse_version, version_rank


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
    rollback_of: str | None = None
    override_reason: str | None = None  # why the approver moved a version that was not verified or soaked

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
class WriteRequest:
    """One write into an environment, whole: what moves where (``app`` to ``version`` in every cluster of ``env``),
    over what the approver was shown (``expected``, the gate's ``Plan.current``), how its commit records it
    (``subject``, ``trailers``) and whether it may go back (``allow_downgrade``).

    One value, not a list of keywords, so that every layer from a flow's deploy step to the push carries the very
    change that was approved, and none can drop or swap a part of it on the way.

    ``release_environment`` and ``rerun`` are derived, never chosen (``promo.tasks.gitops.write_request`` fills
    both): the (name, clusters) where releases run, whose version lets a hotfix's lower base into ``env`` (None when
    ``env`` is that environment), and the command a refused write names to run again."""

    app: str
    env: str
    clusters: Sequence[str]
    version: str
    expected: Mapping[str, str]
    subject: str
    trailers: Trailers
    allow_downgrade: bool = False  # a rollback's alone: it goes back on purpose (approved, or on_failure: rollback)
    release_environment: tuple[str, Sequence[str]] | None = None
    rerun: str | None = None


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


@dataclass(frozen=True)
class Proposal:
    """A write made as a commit on a branch of its own, for a pull request: ``base`` is the head it was built on,
    ``message`` its subject, body and trailers, ``files`` what it writes (path -> text)."""

    commit: str
    base: str
    branch: str
    message: str
    files: Mapping[str, str]
    plan: Plan
    reused: bool = False  # the branch held this change already (a re-run)


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
        budget: RetryBudget = RetryBudget(),
        write_lock: WriteLock | None = None,
    ) -> None:
        """``write_lock`` is held around each write's fetch-edit-push (see ``Mirror.update_branch``): the flows pass
        the Prefect server's lock on this repository, so writers with caches on different hosts queue, not race."""
        self.branch = branch
        self.root = root
        self.author = author
        self.budget = budget
        self.write_lock = write_lock
        self.mirror = Mirror.open(url, cache_dir, branch=branch)

    def environment_version(
        self, app: str, env: str, clusters: Sequence[str], *, snapshot: Snapshot | None = None
    ) -> str:
        """The chart version ``app`` runs in ``env``: the same in every cluster, or a ConflictError naming them.

        Without ``snapshot`` the branch is fetched first; a caller reading several environments passes one
        ``snapshot()`` so they are read from one commit with one fetch."""
        versions = self.cluster_versions(app, env, clusters, snapshot=snapshot)
        if set(versions.values()) == {""}:
            raise NotFound(
                f"{app} has no version in {env} yet (targetRevision is empty in {', '.join(versions)})",
                f"deploy a version into {env} first: promote it from the environment before, or publish to dev",
            )
        if len(set(versions.values())) > 1:
            raise ConflictError(
                f"the clusters of {env} run different versions of {app}: {describe_clusters(versions)}, "
                "so which one would move on is ambiguous",
                f"promote one version into {env} to align them, or fix the manifests by hand",
            )
        return next(iter(versions.values()))

    def cluster_versions(
        self, app: str, env: str, clusters: Sequence[str], *, snapshot: Snapshot | None = None
    ) -> dict[str, str]:
        """cluster -> the ``targetRevision`` ``app`` has there ("" for nothing yet), whether or not they agree."""
        manifests = self._manifests(snapshot or self.snapshot(), app, env, clusters)
        return {cluster: read_target_revision(text, source=path) for cluster, (path, text) in manifests.items()}

    def snapshot(self) -> Snapshot:
        """The branch as it is on the remote now (fetched: the branch and tags only; reads and writes here never fetch
        promo's records, ``Mirror.records`` fetches them where they are read)."""
        return self.mirror.snapshot(self.branch)

    def plan(
        self,
        app: str,
        env: str,
        clusters: Sequence[str],
        version: str,
        *,
        release_environment: tuple[str, Sequence[str]] | None = None,
        allow_downgrade: bool = False,
    ) -> Plan:
        """What writing ``version`` would change. A downgrade is refused here already (see ``set_version``), so
        nobody is asked to approve a change that would never be written."""
        snapshot = self.snapshot()
        plan = self._plan(snapshot, app, env, clusters, version)
        if not allow_downgrade:
            self._check_no_downgrade(snapshot, app, env, plan.current, version, release_environment)
        return plan

    def set_version(self, request: WriteRequest) -> SetVersionResult:
        """Set ``request.app`` in every cluster of its ``env`` to its ``version`` in one pushed commit; no commit if
        already there.

        ``request.expected`` is what each cluster ran when the change was shown (``Plan.current``). Every attempt
        compares it with the freshly fetched head: a cluster that moved since is never overwritten, the write is
        refused (ConflictError naming ``request.rerun``, the command to run again). A cluster already at the version
        is no move. Nor does a write go back (``is_downgrade``) but with ``request.allow_downgrade``: a rollback's,
        which goes back on purpose; above ``request.release_environment``'s version a hotfix's lower base may pass."""
        edit, message, plans = self._write(request)
        result = self.mirror.update_branch(
            self.branch, edit, message, author=self.author, budget=self.budget, lock=self.write_lock
        )
        plan = plans[-1]
        app, env, version = request.app, request.env, request.version
        summary = (
            f"{app} in {env} set to {version} in {result.commit[:12]}"
            if result.commit
            else f"{app} in {env} is already at {version}"
        )
        return SetVersionResult(
            result.commit, result.changed_paths, plan.diff, plan.already_current, result.attempts, summary
        )

    def propose_version(self, request: WriteRequest, *, branch: str) -> Proposal | None:
        """The commit ``set_version`` would push, built on the branch's head and pushed to ``branch`` instead (a pull
        request's head), with the same checks against ``request.expected``; None when the environment runs the
        version already.

        A ``branch`` left by an earlier attempt is replaced only by the caller (it may be a pull request's head)."""
        edit, message, plans = self._write(request)
        head = self.snapshot()
        changes = {path: text for path, text in (edit(head) or {}).items() if head.read_file(path) != text}
        if not changes:
            return None
        text = message(changes)
        there = self.mirror.fetch_branch(branch)
        if there is not None:  # an earlier attempt's: the same change is reused, any other one is stale
            if all(self.mirror.read_file(there, path) == after for path, after in changes.items()):
                return Proposal(there, head.commit, branch, text, changes, plans[-1], reused=True)
            raise StaleBranch(
                f"branch {branch} of {self.mirror.display_url} holds another change than this write",
                "close its pull request and delete the branch, then run again",
            )
        commit = self.mirror.commit_files(head.commit, changes, text, self.author)
        self.mirror.create_branch(branch, commit)
        return Proposal(commit, head.commit, branch, text, changes, plans[-1])

    def _write(
        self, request: WriteRequest
    ) -> tuple[Callable[[Snapshot], dict[str, str]], Callable[[Mapping[str, str]], str], list[Plan]]:
        """The edit and the message of one write (pushed or proposed), and the plans its attempts made."""
        app, env, version = request.app, request.env, request.version
        subject = " ".join(request.subject.split())
        if not subject:
            raise InputError("the commit subject is empty", f"describe the change, e.g. 'promote {app} to {env}'")
        plans: list[Plan] = []  # the plan of each attempt; the last one is what was written

        def edit(snapshot: Snapshot) -> dict[str, str]:
            plan = self._plan(snapshot, app, env, request.clusters, version)
            check_unmoved(app, env, plan.current, request.expected, version, request.rerun)
            if not request.allow_downgrade:
                self._check_no_downgrade(snapshot, app, env, plan.current, version, request.release_environment)
            plans.append(plan)
            return {change.path: change.after for change in plan.changes}

        def message(_changes: Mapping[str, str]) -> str:
            body = [f"Set the chart version of {app} in {env} to {version}:"]
            for change in plans[-1].changes:
                body.append(f"  {change.path}: {read_target_revision(change.before) or '<none>'} -> {version}")
            return "\n\n".join(part for part in (subject, "\n".join(body), request.trailers.render()) if part) + "\n"

        return edit, message, plans

    def _check_no_downgrade(
        self,
        snapshot: Snapshot,
        app: str,
        env: str,
        current: Mapping[str, str],
        version: str,
        release_environment: tuple[str, Sequence[str]] | None,
    ) -> None:
        for cluster, was in current.items():  # a revision that is no version cannot be ordered: name where it is
            if was:
                parse_version(was, what=f"the targetRevision of {app} in {env}/{cluster}")
        floor = None  # what the release environment runs (its highest cluster, should they disagree)
        if release_environment is not None:
            try:
                released = self.cluster_versions(app, *release_environment, snapshot=snapshot)
            except NotFound:  # no manifest there yet: nothing released, which every version is above
                released = {}
            floor = max(released.values(), key=version_rank, default="")
        newer = {cluster: was for cluster, was in current.items() if is_downgrade(was, version, floor=floor)}
        if newer:
            raise ConflictError(
                f"{env} runs a newer version of {app} than {version} ({describe_clusters(newer)}), "
                "and promo does not move an environment back",
                f"promote a version at least as new into {env}; going back is a rollback, made on purpose",
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


def agreed_version(versions: Mapping[str, str]) -> str | None:
    """The one version every cluster runs; None when nothing runs ("") or the clusters disagree."""
    agreed = set(versions.values())
    return (agreed.pop() or None) if len(agreed) == 1 else None


def describe_clusters(versions: Mapping[str, str]) -> str:
    """``preprod-a=1.0.0, preprod-b=<none>``: what each cluster runs, for messages and the status table."""
    return ", ".join(f"{cluster}={version or '<none>'}" for cluster, version in versions.items())


def check_unmoved(
    app: str, env: str, current: Mapping[str, str], expected: Mapping[str, str], version: str, rerun: str | None
) -> None:
    """Refuse the write when a cluster no longer runs what was shown (a cluster already at ``version`` is fine)."""
    moves = {
        cluster: (expected.get(cluster), now)
        for cluster, now in current.items()
        if now != version and now != expected.get(cluster)
    }
    if not moves:
        return
    described = [
        f"from {_shown(shown)} to {now or '<none>'}" + (f" in {cluster}" if len(current) > 1 else "")
        for cluster, (shown, now) in moves.items()
    ]
    raise ConflictError(
        f"{env} of {app} moved {', '.join(described)} since this change was planned and shown",
        f"run {rerun or 'the promotion'} again: it plans (and its gate shows) the change from what {env} runs now",
    )


def _shown(version: str | None) -> str:
    return "<not shown>" if version is None else version or "<none>"
