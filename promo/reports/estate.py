"""`promo status --all`: every app in every environment, read from the GitOps repository alone.

Apps are what the layout holds (``<root>/<env>/<cluster>/<app>.yaml``), whatever promo.yaml's ``app`` is. The whole
read is one fetch, one ``ls-tree`` and one ``cat-file`` for every manifest, and one ``for-each-ref`` for every
verdict, so 2,000 apps cost about what one does plus the parsing. The registry is not asked: this is what git knows.

A version counts as verified (or failed) when a verdict of its app and environment names that version; of several,
the newest decides. A manifest promo cannot read (broken YAML, several documents, a merge key, no chart source)
is reported in its cell, never stops the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from promo.config import PromoConfig
from promo.errors import PromoError
from promo.gitops.manifests import read_target_revision
from promo.gitops.mirror import Mirror
from promo.gitops.repo import GitOpsRepo, agreed_version, describe_clusters
from promo.gitops.verdicts import KIND as VERDICTS, Verdict, parse_verdict


@dataclass(frozen=True)
class Placement:
    """One app in one environment: what each of its clusters runs ("" while nothing is deployed), the verdict on
    that version, and the clusters whose manifest could not be read (cluster -> why)."""

    clusters: Mapping[str, str]
    verdict: str | None = None  # "verified", "failed", or None: no verdict names this version here
    errors: Mapping[str, str] = field(default_factory=dict)

    @property
    def version(self) -> str | None:
        """The one version every readable cluster runs; None when nothing runs or the clusters disagree."""
        return agreed_version(self.clusters)

    @property
    def clusters_disagree(self) -> bool:
        return len(set(self.clusters.values())) > 1

    def text(self) -> str:
        """The table cell: the version and its mark, each cluster's version when they disagree, ``error`` when a
        manifest was unreadable."""
        if self.errors:
            return "error"
        if self.clusters_disagree:
            return f"{describe_clusters(self.clusters)} (clusters disagree)"
        mark = {"verified": " ✓", "failed": " ✗"}.get(self.verdict or "", "")
        return f"{self.version or '<none>'}{mark}"

    def as_json(self) -> dict[str, object]:
        return {
            "version": self.version,
            "verdict": self.verdict,
            "clusters": dict(self.clusters),
            "clusters_disagree": self.clusters_disagree,
            "errors": dict(self.errors),
        }


@dataclass(frozen=True)
class Estate:
    """What the GitOps branch at ``commit`` deploys: app -> environment -> placement (absent where the app has no
    manifest in that environment), with ``environments`` in promo.yaml's order, then any others by name."""

    commit: str
    environments: tuple[str, ...]
    apps: Mapping[str, Mapping[str, Placement]]

    def as_json(self) -> dict[str, object]:
        """The documented ``--json`` structure: every app lists every environment, null where it has no manifest."""
        return {
            "commit": self.commit,
            "environments": list(self.environments),
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
    for path, text in mirror.read_files_under(commit, root).items():
        parts = path[len(root) + 1 :].split("/")
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
            apps[app][env] = Placement(clusters, verdict, dict(sorted(errors.get(app, {}).get(env, {}).items())))
    seen = {env for envs in found.values() for env in envs}
    order = [env for env in environment_order if env in seen] + sorted(seen - set(environment_order))
    return Estate(commit, tuple(order), apps)


def _newest_verdicts(mirror: Mirror) -> dict[tuple[str, str, str], str]:
    """(app, env, version) -> the outcome of the newest verdict naming it, from one read of every verdict record."""
    newest: dict[tuple[str, str, str], Verdict] = {}
    for name, annotation in mirror.records(VERDICTS).items():
        if annotation.message is None or name.count("/") != 2:
            continue
        app, env, _ = name.split("/")
        verdict = parse_verdict(name, annotation.message)
        key = (app, env, verdict.version)
        if key not in newest or verdict.checked_at >= newest[key].checked_at:
            newest[key] = verdict
    return {key: verdict.outcome for key, verdict in newest.items()}


def _json_or_none(placement: Placement | None) -> dict[str, object] | None:
    return placement.as_json() if placement is not None else None
