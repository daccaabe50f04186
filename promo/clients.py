"""From one PromoConfig to the clients that act on the world: registry, GitOps repo, app repo, image builder.

Kept apart so flows and the CLI build their clients the same way, and tests can build them from a config too.
The GitHub forge (with its JWT and crypto libraries), Argo CD and the image builders are imported where they are
built: `promo status` and the other read-only commands start in a fraction of the time without them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from promo.registry import helm
from promo.config import ArgoCDCheck, ForgeSettings, PromoConfig
from promo.errors import ConfigError, InputError, NotFound
from promo.forges.base import FORGE_KINDS, Forge, ForgeKind, github_repository
from promo.gitops.mirror import Mirror, WriteLock
from promo.gitops.repo import GitOpsRepo
from promo.registry.credentials import PASSWORD_BLOCK, PASSWORD_VARIABLE, USERNAME_VARIABLE, Credentials, credentials_for
from promo.registry.oci import Registry
from promo.secrets import secret_block_value

if TYPE_CHECKING:
    from promo.forges.github import TokenProvider
    from promo.forges.github_pulls import GitHubPullRequests
    from promo.registry.images import ImageBuilder
    from promo.verify.argocd import ArgoCD


def split_repository(repository: str) -> tuple[str, str]:
    """``host[:port]/path`` -> (host, path), as in ``helm push x.tgz oci://host/path``."""
    host, _, path = repository.partition("/")
    return host, path


def check_credentials(config: PromoConfig) -> PromoConfig:
    """``config``, once the registry credentials it needs are present: a flow checks them before any change, so a
    missing password fails at once and not after a build commit was pushed."""
    for repository in (config.image.repository, config.chart.repository):
        registry_credentials(config, split_repository(repository)[0])
    return config


def registry_credentials(config: PromoConfig, host: str) -> Credentials:
    """Basic auth takes the username from $PROMO_REGISTRY_USERNAME, else ``registry.username``, and the password
    from $PROMO_REGISTRY_PASSWORD, else the Prefect Secret block ``promo-registry-password`` that `promo setup`
    creates: the Prefect API is asked only when the variable is unset."""
    if config.registry.auth != "basic":
        return credentials_for(config.registry.auth, host)
    username = os.environ.get(USERNAME_VARIABLE) or config.registry.username
    password = os.environ.get(PASSWORD_VARIABLE) or secret_block_value(PASSWORD_BLOCK)
    return credentials_for("basic", host, username=username, password=password)


@contextmanager
def open_registry(config: PromoConfig, repository: str) -> Iterator[tuple[Registry, str]]:
    """The registry serving ``repository`` and the repository's path on it."""
    host, path = split_repository(repository)
    with Registry(host, registry_credentials(config, host), insecure=config.registry.insecure) as registry:
        yield registry, path


def pushed_chart_digest(config: PromoConfig, version: str) -> str:
    """The manifest digest of the app's chart ``version`` in its chart repository; NotFound when it is not there."""
    with open_registry(config, chart_repository(config)) as (registry, repository):
        pushed = helm.existing_chart(registry, repository, version)
    if pushed is None:
        raise NotFound(
            f"chart {config.chart_name} {version} is not in {chart_repository(config)}",
            "check chart.repository in promo.yaml; publish the chart again with `promo publish-dev`",
        )
    return pushed.digest


def chart_repository(config: PromoConfig) -> str:
    """Where the app's chart lives: ``<chart.repository>/<chart name>``, as `helm push` names it."""
    host, namespace = split_repository(config.chart.repository)
    return f"{host}/{helm.chart_repository(namespace, config.chart_name)}"


def gitops_repo(config: PromoConfig, write_lock: WriteLock | None = None) -> GitOpsRepo:
    """``write_lock``: held around each write's fetch-edit-push (the write task passes the repository's Prefect lock)."""
    return GitOpsRepo(
        config.gitops.url, config.gitops.branch, config.resolved_cache_dir, config.gitops.root, write_lock=write_lock
    )


def app_mirror(config: PromoConfig) -> Mirror:
    return Mirror.open(config.app_repo.url, config.resolved_cache_dir)


def forge(config: PromoConfig, mirror: Mirror | None = None) -> Forge:
    """Where releases and pull requests of the app repository live."""
    settings = config.forge
    mirror = mirror or app_mirror(config)
    token_source = None
    if settings.kind == "github":
        token_source = github_token_source(settings, settings.repository or github_repository(mirror.url))
    return forge_for(
        settings.kind, mirror=mirror, repository=settings.repository, token_source=token_source, api_url=settings.api_url
    )


def forge_for(
    kind: ForgeKind,
    *,
    mirror: Mirror,
    repository: str | None = None,
    token_source: TokenProvider | None = None,
    api_url: str | None = None,
) -> Forge:
    """The forge of the app repository ``mirror`` is a cache of.

    GitHub needs ``owner/name``: ``repository``, else read from a github.com URL of the mirror. Its token comes from
    ``token_source``, by default ``$GITHUB_TOKEN``. The forges are imported here, where they are chosen: GitHub's
    brings its JWT and crypto libraries.
    """
    if kind == "local":
        from promo.forges.local import LocalForge

        return LocalForge(mirror)
    if kind == "github":
        from promo.forges.github import DEFAULT_API_URL, EnvToken, GitHubForge

        owner_repo = repository or github_repository(mirror.url)
        if owner_repo is None:
            raise InputError(
                f"cannot tell the GitHub repository of {mirror.display_url}",
                "set the forge repository as owner/name in promo.yaml",
            )
        return GitHubForge(owner_repo, token_source or EnvToken(), api_url=api_url or DEFAULT_API_URL)
    raise InputError(f"unknown forge {kind!r}", f"use one of: {', '.join(FORGE_KINDS)}")


def gitops_pull_requests(config: PromoConfig, token_source: TokenProvider | None = None) -> GitHubPullRequests:
    """Pull requests of the GitOps repository on GitHub (for ``write: pull-request``), with the forge's token
    settings unless ``token_source`` is given (a reviewer's own token)."""
    from promo.forges.github import DEFAULT_API_URL, GitHubForge
    from promo.forges.github_pulls import GitHubPullRequests

    repository = gitops_github_repository(config)
    if repository is None:
        raise ConfigError(
            f"cannot tell the GitHub repository of the GitOps remote {config.gitops.url}",
            "set gitops.repository as owner/name in promo.yaml",
        )
    token_source = token_source or github_token_source(config.forge, repository)
    return GitHubPullRequests(GitHubForge(repository, token_source, api_url=config.forge.api_url or DEFAULT_API_URL))


def gitops_github_repository(config: PromoConfig) -> str | None:
    """owner/name of the GitOps repository on GitHub: promo.yaml's, else read from its remote; None off GitHub."""
    return config.gitops.repository or github_repository(config.gitops.url)


def github_token_source(settings: ForgeSettings, repository: str | None) -> TokenProvider:
    from promo.forges.github import DEFAULT_API_URL, EnvToken, GitHubAppToken, PrefectSecretToken

    if settings.token == "secret":
        return PrefectSecretToken(settings.secret_block)
    if settings.token == "app":
        private_key = os.environ.get(settings.app_private_key_env)
        if not settings.app_id or not private_key:
            raise ConfigError(
                "a GitHub App token needs forge.app_id and the app's private key",
                f"set forge.app_id in promo.yaml and the PEM key in ${settings.app_private_key_env}",
            )
        return GitHubAppToken(
            settings.app_id,
            private_key,
            settings.app_installation_id,
            repository=repository,
            api_url=settings.api_url or DEFAULT_API_URL,
        )
    return EnvToken(settings.token_env)


def image_builder(config: PromoConfig) -> ImageBuilder:
    from promo.registry.images import select_builder

    storage = Path(config.image.storage_root) if config.image.storage_root else None
    return select_builder(config.image.builder, storage)


def argocd_client(settings: ArgoCDCheck) -> ArgoCD:
    """Argo CD for verification; its token is read at the first request, from the environment or a Secret block."""
    from promo.verify.argocd import ArgoCD

    return ArgoCD(settings, argocd_token_source(settings))


def argocd_token_source(settings: ArgoCDCheck) -> TokenProvider | None:
    from promo.forges.github import EnvToken, PrefectSecretToken

    if settings.token == "none":
        return None
    if settings.token == "secret":
        return PrefectSecretToken(settings.secret_block)
    return EnvToken(settings.token_env, needed="an Argo CD API token that may get the Applications")
