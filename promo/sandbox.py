"""The local world ``promo sandbox DIR`` lays out and ``promo demo`` runs in: real remotes, a real registry.

    DIR/promo.yaml              the config the CLI uses (also committed to the app repository)
    DIR/remotes/<app>.git       bare app repository on main: the sample app, its chart and promo.yaml
    DIR/remotes/gitops.git      bare GitOps repository on main: one Argo CD Application per environment and cluster
    DIR/registry/               a docker-registry process; state.json records its PID and port
    DIR/buildah/                buildah's storage (image.storage_root)
    DIR/cache/                  promo's git caches (cache_dir)

Creating is idempotent: an existing sandbox is reused and a stopped registry restarted, on its old port when that
is free, else on a new one written into DIR/promo.yaml. Remotes are built aside and moved into place, so a run that
stops halfway leaves a remote whole or absent, and the next run completes the rest.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedSeq

from promo.config import EnvironmentSettings, PromoConfig, load_config
from promo.errors import InputError, ToolError
from promo.images import registry_host
from promo.manifests import manifest_path, validate_name
from promo.registry_server import RegistryServer

BRANCH = "main"
GITOPS_REMOTE = "gitops.git"
CHART_NAMESPACE = "charts"
ENVIRONMENTS = (
    EnvironmentSettings(name="dev", clusters=["preprod"]),
    EnvironmentSettings(name="test", clusters=["preprod"]),  # no approvers: anyone may approve
    EnvironmentSettings(name="stage", clusters=["preprod"], approvers=["demo", "alice"]),
    EnvironmentSettings(name="prod", clusters=["prod"], approvers=["demo", "alice"]),
)
# prod's Application is multi-source (chart + git values), so promo's multi-source handling is exercised.
MULTI_SOURCE_ENVIRONMENTS = frozenset({"prod"})

_GIT_IDENTITY = ("-c", "user.name=promo sandbox", "-c", "user.email=sandbox@promo.local", "-c", "commit.gpgsign=false")


@dataclass(frozen=True)
class Sandbox:
    directory: Path
    config_path: Path
    registry_host: str
    registry_pid: int
    app: str
    app_remote: Path
    gitops_remote: Path
    builder_storage: Path


def create_sandbox(directory: Path, *, app: str = "hello") -> Sandbox:
    """Lay out (or reuse) the sandbox in ``directory`` and make sure its registry runs."""
    validate_name("app", app)
    directory = directory.resolve()
    config_path = directory / "promo.yaml"
    previous = load_config(config_path) if config_path.exists() else None
    if previous is not None and previous.app != app:
        raise InputError(
            f"{directory} already holds a sandbox for app {previous.app!r}",
            f"keep app {previous.app!r} there, or use another directory for {app!r}",
        )
    previous_host = registry_host(previous.image.repository) if previous is not None else None
    registry = _running_registry(directory / "registry", previous_host)
    app_remote = directory / "remotes" / f"{app}.git"
    gitops_remote = directory / "remotes" / GITOPS_REMOTE
    config = _config(directory, app, app_remote, gitops_remote, registry.host)
    if not gitops_remote.exists():
        _create_remote(gitops_remote, _gitops_files(config), "Argo CD Applications for the promo sandbox")
    if not app_remote.exists():
        _create_remote(app_remote, _app_files(config), f"{app}: sample app, chart and promo.yaml")
    if previous is None:
        config_path.write_text(_config_text(config), encoding="utf-8")
    elif previous_host != registry.host:
        _move_registry(config_path, previous_host, registry.host)
    return Sandbox(
        directory=directory,
        config_path=config_path,
        registry_host=registry.host,
        registry_pid=registry.pid,
        app=app,
        app_remote=app_remote,
        gitops_remote=gitops_remote,
        builder_storage=_builder_storage(directory),
    )


def stop_sandbox(directory: Path) -> bool:
    """Stop the sandbox's registry by its recorded PID; False when none was running."""
    return RegistryServer.stop_recorded(_state_path(directory.resolve() / "registry"))


def _state_path(registry_root: Path) -> Path:
    return registry_root / "state.json"


def _builder_storage(directory: Path) -> Path:
    return directory / "buildah"


def _running_registry(root: Path, previous_host: str | None) -> RegistryServer:
    """The recorded registry if it runs, else a new one: on promo.yaml's port when that is still free."""
    state = _state_path(root)
    if state.exists():
        recorded = RegistryServer.from_state(state)
        if recorded.is_running():
            return recorded
    port = int(previous_host.rpartition(":")[2]) if previous_host is not None else None
    server = RegistryServer.start(root, port=port if port is not None and _port_is_free(port) else None)
    server.write_state(state)
    return server


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _config(directory: Path, app: str, app_remote: Path, gitops_remote: Path, host: str) -> PromoConfig:
    return PromoConfig.model_validate(
        {
            "app": app,
            "app_repo": {"url": app_remote.as_uri(), "branch": BRANCH},
            "gitops": {"url": gitops_remote.as_uri(), "branch": BRANCH},
            "chart": {"path": f"charts/{app}", "repository": f"{host}/{CHART_NAMESPACE}"},
            "image": {"repository": f"{host}/{app}", "storage_root": _builder_storage(directory)},
            "environments": ENVIRONMENTS,
            "gate": {"poll_interval_seconds": 0.5},
            "cache_dir": directory / "cache",
        }
    )


def _config_text(config: PromoConfig) -> str:
    data = config.model_dump(mode="json", exclude_defaults=True)
    data["environments"] = [env.model_dump(mode="json") for env in config.environments]  # all of them, in full
    body = io.StringIO()
    YAML().dump(_short_lists_inline(data), body)
    return (
        "# promo.yaml of a promo sandbox, written by `promo sandbox`. The registry's port is rewritten here\n"
        "# when a restart has to move it; registry.auth is anonymous and loopback registries are plain HTTP.\n"
        f"{body.getvalue()}"
    )


def _short_lists_inline(data: object) -> object:
    """Lists of scalars as ``[a, b]``, everything else in block style: the way people write promo.yaml."""
    if isinstance(data, dict):
        return {key: _short_lists_inline(value) for key, value in data.items()}
    if isinstance(data, list) and all(isinstance(item, (dict, list)) for item in data):
        return [_short_lists_inline(item) for item in data]
    if isinstance(data, list):
        inline = CommentedSeq(data)
        inline.fa.set_flow_style()
        return inline
    return data


def _move_registry(config_path: Path, old_host: str, new_host: str) -> None:
    text = config_path.read_text(encoding="utf-8")
    config_path.write_text(text.replace(f"{old_host}/", f"{new_host}/"), encoding="utf-8")


def _app_files(config: PromoConfig) -> dict[str, str]:
    placeholders = {"__APP__": config.app, "__IMAGE_REPOSITORY__": config.image.repository}
    files = _sample_tree(resources.files("promo") / "sample" / "app", placeholders)
    files["promo.yaml"] = _config_text(config)
    return files


def _gitops_files(config: PromoConfig) -> dict[str, str]:
    templates = resources.files("promo") / "sample" / "gitops"
    files: dict[str, str] = {}
    for env in config.environments:
        multi_source = env.name in MULTI_SOURCE_ENVIRONMENTS
        for cluster in env.clusters:
            placeholders = {
                "__APP__": config.app,
                "__ENV__": env.name,
                "__CLUSTER__": cluster,
                "__CHART_REPOSITORY__": config.chart.repository,
                "__GITOPS_URL__": config.gitops.url,
            }
            template = "application-multisource.yaml" if multi_source else "application.yaml"
            path = manifest_path(env.name, cluster, config.app, config.gitops.root)
            files[str(path)] = _render(templates.joinpath(template).read_text(encoding="utf-8"), placeholders)
            if multi_source:
                values = _render(templates.joinpath("values.yaml").read_text(encoding="utf-8"), placeholders)
                files[f"values/{config.app}/{env.name}.yaml"] = values
    return files


def _sample_tree(root: Traversable, placeholders: Mapping[str, str]) -> dict[str, str]:
    files: dict[str, str] = {}
    for entry in root.iterdir():
        name = _render(entry.name, placeholders)
        if entry.is_dir():
            files.update({f"{name}/{path}": text for path, text in _sample_tree(entry, placeholders).items()})
        else:
            files[name] = _render(entry.read_text(encoding="utf-8"), placeholders)
    return files


def _render(text: str, placeholders: Mapping[str, str]) -> str:
    for placeholder, value in placeholders.items():
        text = text.replace(placeholder, value)
    return text


def _create_remote(remote: Path, files: Mapping[str, str], message: str) -> None:
    """A bare repository whose main holds ``files`` in one commit, built aside and then moved into place."""
    remote.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=remote.parent, prefix=".creating-") as scratch:
        work, bare = Path(scratch) / "work", Path(scratch) / remote.name
        for path, text in files.items():
            target = work / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(text.encode("utf-8"))
        _git("init", "--quiet", f"--initial-branch={BRANCH}", str(work))
        _git("-C", str(work), "add", "--all")
        _git("-C", str(work), *_GIT_IDENTITY, "commit", "--quiet", "--message", message)
        _git("init", "--quiet", "--bare", f"--initial-branch={BRANCH}", str(bare))
        _git("-C", str(work), "push", "--quiet", str(bare), f"{BRANCH}:{BRANCH}")
        bare.rename(remote)


def _git(*args: str) -> None:
    result = subprocess.run(
        ["git", *args], capture_output=True, text=True, stdin=subprocess.DEVNULL,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
    )  # fmt: skip
    if result.returncode != 0:
        last = ((result.stderr or result.stdout).strip().splitlines() or ["no output"])[-1]
        raise ToolError(
            f"`git {' '.join(args)}` failed while creating the sandbox: {last}",
            "check that git works (git --version) and that the sandbox directory is writable",
        )
