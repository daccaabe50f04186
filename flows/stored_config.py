"""promo.yaml kept on the Prefect server, one block per app, so a deployment names its app and any worker runs it.

`promo setup` validates promo.yaml and stores its document as the block ``promo-config/<app>``; the deployments it
registers preset the parameter ``app``, never a path, so a worker on another host or in a fresh pod needs no file.
A run from a terminal keeps reading promo.yaml (``--config``, ``$PROMO_CONFIG``, ``./promo.yaml``): ``run_config`` is
the one place a flow turns its parameters into a config.

A block and not a Variable: a Variable's value is capped at 5,000 characters of JSON (prefect.types,
MAX_VARIABLE_VALUE_LENGTH), which a promo.yaml with a few environments and their checks can outgrow; a block document
has no such cap. The document is stored as promo.yaml set it and validated with ``PromoConfig`` on every read, so a
stored config that an upgraded promo no longer accepts fails at the start of the run, as one line.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect.blocks.core import Block
from pydantic import Field

from promo.clients import check_credentials
from promo.config import PromoConfig, config_document, load_config, validate_config
from promo.errors import ConfigError, InputError
from promo.gitops.manifests import validate_name

BLOCK_TYPE = "promo-config"


class PromoConfigBlock(Block):
    """The validated promo.yaml of one app; the block's name is the app's."""

    _block_type_name = "Promo Config"
    _block_type_slug = BLOCK_TYPE
    _description = "promo.yaml of one app, stored by `promo setup`; deployments of promo read it by the app's name."

    document: dict[str, Any] = Field(description="promo.yaml's settings as JSON; edit promo.yaml and rerun setup")


def block_name(app: str) -> str:
    """How operators find it: ``prefect block inspect promo-config/<app>``."""
    return f"{BLOCK_TYPE}/{app}"


def store_config(config: PromoConfig) -> Literal["created", "updated", "exists"]:
    """Store ``config`` as its app's block; an unchanged document is left as it is."""
    document = config_document(config)
    stored = _load(config.app)
    if stored is not None and stored.document == document:
        return "exists"
    PromoConfigBlock(document=document).save(config.app, overwrite=True)
    return "created" if stored is None else "updated"


def stored_config(app: str) -> PromoConfig:
    """The config `promo setup` stored for ``app`` on this server, validated as promo.yaml is."""
    validate_name("app", app)
    stored = _load(app)
    if stored is None:
        raise ConfigError(
            f"no promo config for app {app} on this server", "run `promo setup --config promo.yaml` for that app"
        )
    config = validate_config(stored.document, f"the config stored in block {block_name(app)}")
    if config.app != app:  # edited by hand into another app's: its runs would write that app's manifests
        raise ConfigError(
            f"block {block_name(app)} holds the config of app {config.app}", f"rerun `promo setup` with {app}'s promo.yaml"
        )
    return config


def run_config(config_path: str | None, app: str | None) -> PromoConfig:
    """The config of a flow run, with its registry credentials checked: the app's stored config when a deployment
    names the app, else promo.yaml from ``config_path``, ``$PROMO_CONFIG`` or ``./promo.yaml``."""
    if app is not None and config_path is not None:
        raise InputError(
            f"both app={app!r} and config_path={config_path!r} were given",
            "pass one: app reads the config `promo setup` stored, config_path reads a promo.yaml",
        )
    return check_credentials(stored_config(app) if app is not None else load_config(config_path))


def _load(app: str) -> PromoConfigBlock | None:
    try:
        return PromoConfigBlock.load(app)
    except ValueError:  # Prefect's answer for a block (or block type) that does not exist
        return None
