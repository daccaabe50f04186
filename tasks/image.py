"""Container image builds."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from promo.clients import image_builder, open_registry, registry_credentials, split_repository
from promo.config import PromoConfig
from promo.registry.images import BuiltImage, existing_image
from promo.registry.oci import is_plain_http
from promo.tasks.retry import TRANSIENT_RETRIES


@task(name="build-image", **TRANSIENT_RETRIES)
def build_image(config: PromoConfig, source: Path, tag: str, created: int) -> BuiltImage:
    """The app's image tagged ``tag``: the one the registry holds already, else built from ``source`` with every
    timestamp at ``created`` and pushed. The digest pins what later stages run, so a tag is never pushed twice."""
    with open_registry(config, config.image.repository) as (registry, _):
        existing = existing_image(registry, config.image.repository, tag)
    if existing is not None:
        get_run_logger().info(
            "Image %s exists already as %s: reused, not built again", existing.reference, existing.digest
        )
        return existing
    host, _ = split_repository(config.image.repository)
    return image_builder(config).build_and_push(
        context=source / config.image.context,
        containerfile=source / config.image.context / config.image.containerfile,
        repository=config.image.repository,
        tag=tag,
        created=created,
        insecure=is_plain_http(host, config.registry.insecure),
        login=registry_credentials(config, host),
    )
