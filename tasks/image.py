"""Container image builds."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from promo.clients import image_builder, registry_credentials, split_repository
from promo.config import PromoConfig
from promo.images import BuiltImage
from promo.oci import is_plain_http
from tasks.retry import TRANSIENT_RETRIES


@task(name="build-image", **TRANSIENT_RETRIES)
def build_image(config: PromoConfig, source: Path, tag: str) -> BuiltImage:
    """Build the app's image from ``source`` and push it tagged ``tag``; the digest pins what later stages run."""
    host, _ = split_repository(config.image.repository)
    return image_builder(config).build_and_push(
        context=source / config.image.context,
        containerfile=source / config.image.context / config.image.containerfile,
        repository=config.image.repository,
        tag=tag,
        insecure=is_plain_http(host, config.registry.insecure),
        login=registry_credentials(config, host),
    )
