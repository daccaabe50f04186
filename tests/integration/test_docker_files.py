"""docker/compose.yaml and docker/worker.Dockerfile are not run in CI (no Docker daemon): check what wires them up."""

from __future__ import annotations

import re
import shlex
import tomllib
from urllib.parse import urlsplit

import pytest
from ruamel.yaml import YAML

from tests.integration.conftest import PROJECT

DOCKER = PROJECT / "docker"


@pytest.fixture(scope="module")
def compose() -> dict:
    return YAML(typ="safe").load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def dockerfile() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped."""
    text = (DOCKER / "worker.Dockerfile").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    return [" ".join(part.split()) for part in "\n".join(lines).replace("\\\n", " ").splitlines() if part.strip()]


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    return env if isinstance(env, dict) else dict(item.split("=", 1) for item in env)


def expand_defaults(value: str) -> str:
    """``${NAME:-default}`` as compose renders it with NAME unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def test_the_four_services_are_there(compose):
    assert set(compose["services"]) == {"postgres", "server", "registry", "worker"}
    assert compose["services"]["registry"]["image"].startswith("registry:2")
    assert compose["services"]["postgres"]["image"].startswith("postgres:")


def test_the_server_uses_the_postgres_service(compose):
    server = compose["services"]["server"]
    url = urlsplit(expand_defaults(env_of(server)["PREFECT_API_DATABASE_CONNECTION_URL"]))
    assert url.scheme == "postgresql+asyncpg"
    assert url.hostname == "postgres" and (url.port or 5432) == 5432
    postgres_env = env_of(compose["services"]["postgres"])
    assert url.username == postgres_env["POSTGRES_USER"]
    assert url.password == expand_defaults(postgres_env["POSTGRES_PASSWORD"])
    assert url.path.lstrip("/") == postgres_env["POSTGRES_DB"]
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "--host" in server["command"] and server["command"][server["command"].index("--host") + 1] == "0.0.0.0"


def test_ports(compose):
    assert "4200:4200" in compose["services"]["server"]["ports"]
    assert "5000:5000" in compose["services"]["registry"]["ports"]
    assert "ports" not in compose["services"]["worker"]  # a worker only polls: nothing connects to it


def test_the_worker_polls_the_server_and_builds_from_this_repository(compose):
    worker = compose["services"]["worker"]
    assert worker["depends_on"]["server"]["condition"] == "service_healthy"
    assert "registry" in worker["depends_on"]
    api = urlsplit(env_of(worker)["PREFECT_API_URL"])
    assert (api.hostname, api.port, api.path) == ("server", 4200, "/api")
    assert (DOCKER / worker["build"]["context"]).resolve() == PROJECT
    assert (DOCKER / worker["build"]["context"] / worker["build"]["dockerfile"]).resolve() == DOCKER / "worker.Dockerfile"
    assert worker["command"][:3] == ["prefect", "worker", "start"]
    assert worker["command"][worker["command"].index("--pool") + 1] == "promo"
    config = env_of(worker)["PROMO_CONFIG"]
    assert any(volume.split(":")[1] == config for volume in worker["volumes"] if isinstance(volume, str))
    assert set(compose["volumes"]) >= {
        volume.split(":")[0] for volume in worker["volumes"] if not volume.startswith((".", "/", "~"))
    }


def test_the_worker_image(dockerfile):
    assert dockerfile[0].startswith("FROM python:3.11-slim")
    installs = next(line for line in dockerfile if "apt-get install" in line)
    assert {"git", "buildah"} <= set(installs.split())
    storage = next(line for line in dockerfile if "/etc/containers/storage.conf" in line)
    assert 'driver = "vfs"' in storage
    assert any(line.startswith("ENV") and "BUILDAH_ISOLATION=chroot" in line for line in dockerfile)
    assert any(line.startswith("RUN pip install") and line.split("&&")[0].split()[-1] == "." for line in dockerfile)
    cmd = next(line for line in dockerfile if line.startswith("CMD "))
    assert shlex.split(cmd.removeprefix("CMD ").strip("[]").replace(",", " ")) == [
        "prefect", "worker", "start", "--pool", "promo", "--type", "process",
    ]  # fmt: skip


def test_the_worker_image_copies_every_installed_package(dockerfile):
    setuptools = tomllib.loads((PROJECT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    # every folder a package is installed from: promo/ itself and those mapped into it (flows/ -> promo.flows)
    packages = {"promo", *setuptools["package-dir"].values()}
    copied = {source for line in dockerfile if line.startswith("COPY ") for source in line.split()[1:-1]}
    assert packages <= copied, f"the Dockerfile does not COPY {packages - copied}"
    assert all((PROJECT / source).exists() for source in copied)


def test_the_worker_queries_for_work_as_often_as_the_one_promo_server_starts(compose, dockerfile):
    """An approved gate's run waits in the pool until a worker next asks for work (bench `approval`, suspended)."""
    from promo.local.prefect_server import WORKER_SETTINGS

    image_env = " ".join(line.removeprefix("ENV ") for line in dockerfile if line.startswith("ENV "))
    for name, value in WORKER_SETTINGS.items():
        assert str(env_of(compose["services"]["worker"])[name]) == value
        assert f"{name}={value}" in image_env.split()
