"""`promo status --all`: every app in every environment, read from the GitOps repository alone.

Apps are what the layout holds (``<root>/<env>/<cluster>/<app>.yaml``), whatever promo.yaml's ``app`` is. The whole
read is one fetch, one ``ls-tree`` and one ``cat-file`` for every manifest, and one ``for-each-ref`` for every
verdict (each signature checked in-process), so 2,000 apps cost about what one does plus the parsing. The registry
is not asked: this is what git knows.

A version counts as verified (or failed) when a verdict of its app and environment names that version; of several,
the newest of promo's own decides. A record promo cannot prove it wrote (docs/records.md) shows as ``untrusted``,
never as verified or failed, and only where promo has no verdict of its own. A manifest promo cannot read (broken
YAML, several documents, a merge key, no chart source) is reported in its cell, never stops the table (the command
exits non-zero after printing it).

An environment's clusters are the directories under its own directory at that commit, whatever they hold: an app
with a manifest in some of them but not in another is flagged in its cell (``missing in``), since Argo CD then runs
it on fewer clusters than the environment has. Telling them costs no git call: they come from the same listing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from promo.config import PromoConfig
from promo.errors import ManifestError, PromoError
from promo.gitops.manifests import read_target_revision
from promo.gitops.mirror import Mirror
from promo.gitops.repo import GitOpsRepo, agreed_version, describe_clusters
from promo.gitops.verdicts import Verdict, read_all_verdicts


@dataclass(frozen=True)
class Placement:
    """One app in one environment: what each of its clusters runs ("" while nothing is deployed), the verdict on
    that version, the clusters whose manifest could not be read (cluster -> why), and the environment's clusters
    that hold no manifest of the app at all."""

    clusters: Mapping[str, str]
    verdict: str | None = None  # "verified", "failed", "deployed", "untrusted", or None: no verdict names it here
    errors: Mapping[str, str] = field(default_factory=dict)
    missing_clusters: tuple[str, ...] = ()

    @property
    def version(self) -> str | None:
        """The one version every readable cluster runs; None when nothing runs or the clusters disagree."""
        return agreed_version(self.clusters)

    @property
    def clusters_disagree(self) -> bool:
        return len(set(self.clusters.values())) > 1

    def text(self) -> str:
        """The table cell: the version and its mark, each cluster's version when they disagree, ``error`` when a
        manifest was unreadable; then the clusters of the environment that lack the app, if any."""
        if self.errors:
            cell = "error"
        elif self.clusters_disagree:
            cell = f"{describe_clusters(self.clusters)} (clusters disagree)"
        else:
            mark = {"verified": " ✓", "failed": " ✗", "untrusted": " (untrusted verdict)"}.get(self.verdict or "", "")
            cell = f"{self.version or '<none>'}{mark}"
        return f"{cell} (missing in {', '.join(self.missing_clusters)})" if self.missing_clusters else cell

    def as_json(self) -> dict[str, object]:
        return {
            "version": self.version,
            "verdict": self.verdict,
            "clusters": dict(self.clusters),
            "clusters_disagree": self.clusters_disagree,
            "errors": dict(self.errors),
            "missing_clusters": list(self.missing_clusters),
        }


@dataclass(frozen=True)
class Estate:
    """What the GitOps branch at ``commit`` deploys: app -> environment -> placement (absent where the app has no
    manifest in that environment), with ``environments`` in promo.yaml's order, then any others by name, and the
    clusters each of them has (the directories under it), in the same order."""

    commit: str
    environments: tuple[str, ...]
    apps: Mapping[str, Mapping[str, Placement]]
    clusters: Mapping[str, tuple[str, ...]]

    def as_json(self) -> dict[str, object]:
        """The documented ``--json`` structure: every app lists every environment, null where it has no manifest."""
        return {
            "commit": self.commit,
            "environments": list(self.environments),
            "clusters": {env: list(clusters) for env, clusters in self.clusters.items()},
            "summary": {
                "apps": len(self.apps),
                "unreadable_manifests": len(self.errors()),
                "missing_manifests": len(self.missing()),
            },
            "apps": [
                {"app": app, "environments": {env: _json_or_none(envs.get(env)) for env in self.environments}}
                for app, envs in self.apps.items()
            ],
        }

    def errors(self) -> list[tuple[str, str, str, str]]:
        """(app, environment, cluster, why) for every manifest that could not be read."""
        return [
            (app, env, cluster, why)
            for app, envs in self.apps.items()
            for env, placement in envs.items()
            for cluster, why in placement.errors.items()
        ]

    def missing(self) -> list[tuple[str, str, str]]:
        """(app, environment, cluster) for every cluster of an environment without a manifest of an app that has one
        in another cluster of that environment."""
        return [
            (app, env, cluster)
            for app, envs in self.apps.items()
            for env, placement in envs.items()
            for cluster in placement.missing_clusters
        ]

    def require_readable(self) -> None:
        """Raise, once the estate is shown, when a manifest could not be read: the table is then incomplete, and a
        script reading it must be able to tell."""
        unreadable = len(self.errors())
        if unreadable:
            them = "it" if unreadable == 1 else "them"
            raise ManifestError(
                f"{unreadable} manifest{'' if unreadable == 1 else 's'} of the GitOps repository at {self.commit[:12]}"
                " could not be read (each error is shown above)",
                f"fix {them} in the GitOps repository and run promo status --all again; every other cell is current",
            )


def read_estate(config: PromoConfig) -> Estate:
    """Every app x environment of the GitOps repository promo.yaml names, from one fetch of its branch."""
    # Opened as every GitOps read and write opens it: a lean cache of that one branch, shared with them.
    gitops = GitOpsRepo(config.gitops.url, config.gitops.branch, config.resolved_cache_dir, config.gitops.root)
    return estate_at(gitops.mirror, gitops.snapshot().commit, gitops.root, config.environment_names)


def estate_at(mirror: Mirror, commit: str, root: str, environment_order: list[str]) -> Estate:
    """The estate at ``commit`` of a fetched mirror, its manifests under ``root``; environments in
    ``environment_order`` first."""
    root = root.strip("/")
    found: dict[str, dict[str, dict[str, str]]] = {}  # app -> env -> cluster -> version
    errors: dict[str, dict[str, dict[str, str]]] = {}
    env_clusters: dict[str, set[str]] = {}  # env -> every directory under it, app manifests or not
    for path, text in mirror.read_files_under(commit, root).items():
        parts = path[len(root) + 1 :].split("/")
        if len(parts) >= 3:
            env_clusters.setdefault(parts[0], set()).add(parts[1])
        if len(parts) != 3 or not parts[2].endswith(".yaml"):
            continue  # not <env>/<cluster>/<app>.yaml: no Application of promo's layout
        env, cluster, app = parts[0], parts[1], parts[2].removesuffix(".yaml")
        try:
            found.setdefault(app, {}).setdefault(env, {})[cluster] = read_target_revision(text, path)
        except PromoError as error:  # the manifest, not the table, is broken
            errors.setdefault(app, {}).setdefault(env, {})[cluster] = str(error)
            found.setdefault(app, {}).setdefault(env, {})
    verdicts = _newest_verdicts(mirror)
    apps: dict[str, dict[str, Placement]] = {}
    for app in sorted(found):
        apps[app] = {}
        for env in sorted(found[app]):
            clusters = dict(sorted(found[app][env].items()))
            version = agreed_version(clusters)
            verdict = verdicts.get((app, env, version)) if version else None
            unreadable = errors.get(app, {}).get(env, {})
            missing: tuple[str, ...] = ()
            if len(clusters) + len(unreadable) < len(env_clusters[env]):  # most apps are on every cluster: no sets
                missing = tuple(sorted(env_clusters[env] - clusters.keys() - unreadable.keys()))
            apps[app][env] = Placement(clusters, verdict, dict(sorted(unreadable.items())), missing)
    seen = {env for envs in found.values() for env in envs}
    order = [env for env in environment_order if env in seen] + sorted(seen - set(environment_order))
    return Estate(commit, tuple(order), apps, {env: tuple(sorted(env_clusters[env])) for env in order})


def _newest_verdicts(mirror: Mirror) -> dict[tuple[str, str, str], str]:
    """(app, env, version) -> the outcome of the newest verdict naming it, from one read of every verdict record.
    promo's own verdicts come first: a record it cannot prove it wrote shows ("untrusted") only where there is none."""
    newest: dict[tuple[str, str, str], Verdict] = {}
    for app, envs in read_all_verdicts(mirror).items():
        for env, verdicts in envs.items():
            for verdict in verdicts.values():
                key = (app, env, verdict.version)
                current = newest.get(key)
                if current is None or (verdict.trusted, verdict.checked_at) >= (current.trusted, current.checked_at):
                    newest[key] = verdict
    return {key: verdict.outcome for key, verdict in newest.items()}


def _json_or_none(placement: Placement | None) -> dict[str, object] | None:
    return placement.as_json() if placement is not None else None
