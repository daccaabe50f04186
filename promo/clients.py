"""From one PromoConfig to the clients that act on the world: registry, GitOps repo, app repo, image builder.

Kept apart so flows and the CLI build their clients the same way, and tests can build them from a config too.
"""

from __future__ import annotations

from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path

from promo.config import PromoConfig, load_config
from promo import helm_oci
from promo.git import Mirror
from promo.gitops import GitOpsRepo
from promo.images import ImageBuilder, select_builder
from promo.oci import Credentials, Registry, credentials_for


def split_repository(repository: str) -> tuple[str, str]:
    """``host[:port]/path`` -> (host, path), as in ``helm push x.tgz oci://host/path``."""
    host, _, path = repository.partition("/")
    return host, path


def load_checked_config(path: str | None) -> PromoConfig:
    """promo.yaml, validated, with the registry credentials it needs present: a flow checks both before any change,
    so a missing password fails at once and not after a build commit was pushed."""
    config = load_config(path)
    for repository in (config.image.repository, config.chart.repository):
        registry_credentials(config, split_repository(repository)[0])
    return config


def registry_credentials(config: PromoConfig, host: str) -> Credentials:
    return credentials_for(config.registry.auth, host)


@contextmanager
def open_registry(config: PromoConfig, repository: str) -> Iterator[tuple[Registry, str]]:
    """The registry serving ``repository`` and the repository's path on it."""
    host, path = split_repository(repository)
    with Registry(host, registry_credentials(config, host), insecure=config.registry.insecure) as registry:
        yield registry, path


def chart_repository(config: PromoConfig) -> str:
    """Where the app's chart lives: ``<chart.repository>/<chart name>``, as `helm push` names it."""
    host, namespace = split_repository(config.chart.repository)
    return f"{host}/{helm_oci.chart_repository(namespace, config.chart_name)}"


def gitops_repo(config: PromoConfig) -> GitOpsRepo:
    return GitOpsRepo(config.gitops.url, config.gitops.branch, config.resolved_cache_dir, config.gitops.root)


def app_mirror(config: PromoConfig) -> Mirror:
    return Mirror.open(config.app_repo.url, config.resolved_cache_dir)


def image_builder(config: PromoConfig) -> ImageBuilder:
    storage = Path(config.image.storage_root) if config.image.storage_root else None
    return select_builder(config.image.builder, storage)
