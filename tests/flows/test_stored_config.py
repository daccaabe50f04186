"""promo.yaml stored on the Prefect server by app: what `promo setup` writes and what a deployment's run reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from ruamel.yaml import YAML

from promo.config import load_config
from promo.errors import ConfigError, InputError
from promo.flows.publish_dev import publish_dev
from promo.flows.stored_config import PromoConfigBlock, block_name, run_config, store_config, stored_config
from promo.local.sandbox import Sandbox


@pytest.fixture()
def fresh_app() -> Iterator[str]:
    """An app name no other test stored a config for, removed again afterwards (the server is per session)."""
    yield "stored"
    with get_client(sync_client=True) as client:
        try:
            client.delete_block_document(client.read_block_document_by_name("stored", "promo-config").id)
        except ObjectNotFound:  # a test that failed before storing anything
            pass


def renamed(sandbox: Sandbox, app: str, tmp_path: Path, **changes: object) -> Path:
    yaml = YAML()
    data = yaml.load(sandbox.config_path.read_text())
    data["app"] = app
    data.update(changes)
    path = tmp_path / f"{app}.yaml"
    with path.open("w") as out:
        yaml.dump(data, out)
    return path


def test_setup_stores_the_config_once_and_says_when_it_changed(sandbox, tmp_path, fresh_app):
    config = load_config(renamed(sandbox, fresh_app, tmp_path))
    assert store_config(config) == "created"
    assert store_config(config) == "exists"
    assert stored_config(fresh_app) == config
    changed = load_config(renamed(sandbox, fresh_app, tmp_path, gate={"timeout_seconds": 60}))
    assert store_config(changed) == "updated"
    assert stored_config(fresh_app).gate.timeout_seconds == 60
    assert block_name(fresh_app) == "promo-config/stored"


def test_a_missing_stored_config_is_one_line_naming_setup():
    with pytest.raises(ConfigError) as caught:
        stored_config("nobody")
    assert str(caught.value) == (
        "no promo config for app nobody on this server; run `promo setup --config promo.yaml` for that app"
    )
    with pytest.raises(InputError, match="not a DNS label"):
        stored_config("../etc")


def test_a_stored_config_is_validated_when_read(sandbox, tmp_path, fresh_app):
    """Edited by hand in the UI, or written by a promo whose settings have since changed: one line, before any work."""
    config = load_config(renamed(sandbox, fresh_app, tmp_path))
    store_config(config)
    broken = PromoConfigBlock.load(fresh_app).document | {"colour": "blue"}
    PromoConfigBlock(document=broken).save(fresh_app, overwrite=True)
    with pytest.raises(ConfigError, match=r"block promo-config/stored: colour: unknown setting; the settings here are: app, "):
        stored_config(fresh_app)
    other = PromoConfigBlock.load(fresh_app).document | {"app": "hello"}
    other.pop("colour")
    PromoConfigBlock(document=other).save(fresh_app, overwrite=True)
    with pytest.raises(ConfigError, match="holds the config of app hello"):
        stored_config(fresh_app)


def test_a_run_takes_its_config_from_the_app_or_from_a_file_never_both(sandbox, monkeypatch, tmp_path):
    store_config(load_config(sandbox.config_path))
    monkeypatch.chdir(tmp_path)  # no promo.yaml here, and none named by the environment
    monkeypatch.setenv("PROMO_CONFIG", str(tmp_path / "absent.yaml"))
    assert run_config(None, sandbox.app) == load_config(sandbox.config_path)
    assert run_config(str(sandbox.config_path), None) == load_config(sandbox.config_path)
    with pytest.raises(ConfigError, match="absent.yaml not found"):
        run_config(None, None)
    with pytest.raises(InputError, match="both app='hello' and config_path="):
        run_config(str(sandbox.config_path), sandbox.app)


def test_publish_dev_by_app_name_runs_where_no_promo_yaml_is(sandbox, monkeypatch, tmp_path):
    store_config(load_config(sandbox.config_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PROMO_CONFIG", raising=False)
    published = publish_dev(app=sandbox.app)
    assert published.app == sandbox.app and published.gitops_commit
