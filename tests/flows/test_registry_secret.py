"""The registry password `promo setup` asks operators to put in the Secret block ``promo-registry-password`` is the one
used when $PROMO_REGISTRY_PASSWORD is unset: against the real test Prefect server and a real password-protected
registry, inside a flow run, and without the password reaching a log, a state or an error."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from prefect import flow
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

from promo.config import ChartSettings, GitOpsSettings, ImageSettings, PromoConfig, RegistrySettings, RepoSettings
from promo.errors import AuthError, ConfigError
from promo.registry.credentials import PASSWORD_BLOCK
from promo.secrets import SECRET_PLACEHOLDER
from promo.tasks.chart import check_registry_access
from tests.fixtures.registry import AuthRegistryServer
from tests.reliability.test_secrets import Scan

WRONG_PASSWORD = "MARKER-WRONG-BLOCK-PASSWORD-71d3"


def basic_auth_config(host: str, username: str | None) -> PromoConfig:
    return PromoConfig(
        app="hello",
        app_repo=RepoSettings(url="file:///nowhere/hello.git"),
        gitops=GitOpsSettings(url="file:///nowhere/gitops.git"),
        chart=ChartSettings(path="charts/hello", repository=f"{host}/charts"),
        image=ImageSettings(repository=f"{host}/hello"),
        registry=RegistrySettings(auth="basic", username=username),
    )


@flow(name="check-registry-secret")
def check_access(host: str, username: str | None) -> None:
    check_registry_access(basic_auth_config(host, username))


@pytest.fixture
def password_block(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Sets the Secret block's value, with no registry credentials in the environment; the block goes afterwards."""
    monkeypatch.delenv("PROMO_REGISTRY_USERNAME", raising=False)
    monkeypatch.delenv("PROMO_REGISTRY_PASSWORD", raising=False)
    yield lambda value: Secret(value=value).save(PASSWORD_BLOCK, overwrite=True)
    with get_client(sync_client=True) as client:
        try:
            client.delete_block_document(client.read_block_document_by_name(PASSWORD_BLOCK, "secret").id)
        except ObjectNotFound:
            pass


def test_the_password_comes_from_the_secret_block_when_the_variable_is_unset(
    basic_auth_registry_server: AuthRegistryServer, password_block, monkeypatch, caplog
) -> None:
    registry = basic_auth_registry_server
    scan = Scan(caplog)

    password_block(registry.password)
    check_access(registry.host, registry.username)  # the username from promo.yaml, the password from the block

    password_block(WRONG_PASSWORD)
    with pytest.raises(AuthError) as refused:
        check_access(registry.host, registry.username)
    assert "may not push" in str(refused.value) and "\n" not in str(refused.value)
    scan.error("refused block password", refused.value)

    monkeypatch.setenv("PROMO_REGISTRY_USERNAME", registry.username)
    monkeypatch.setenv("PROMO_REGISTRY_PASSWORD", registry.password)
    check_access(registry.host, None)  # the variables come first: the wrong block value is not read

    scan.prefect()
    scan.assert_clean(registry.password, WRONG_PASSWORD)


@pytest.mark.parametrize("block", [None, SECRET_PLACEHOLDER])
def test_no_password_in_either_place_is_one_line_naming_both(
    basic_auth_registry_server: AuthRegistryServer, password_block, block: str | None
) -> None:
    if block is not None:
        password_block(block)  # what `promo setup` leaves: not a password

    with pytest.raises(ConfigError) as missing:
        check_access(basic_auth_registry_server.host, "promo-ci")

    assert str(missing.value) == (
        f"basic credentials for registry {basic_auth_registry_server.host} have no password; "
        "set PROMO_REGISTRY_USERNAME and PROMO_REGISTRY_PASSWORD, "
        "or registry.username in promo.yaml and the Prefect Secret block promo-registry-password"
    )
