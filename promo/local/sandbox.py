"""The local world ``promo sandbox DIR`` lays out and ``promo demo`` runs in: real remotes, a real registry, and a
stand-in for Argo CD and the clusters.

    DIR/promo.yaml              the config the CLI uses (also committed to the app repository)
    DIR/remotes/<app>.git       bare app repository on main: the sample app, its chart and promo.yaml
    DIR/remotes/gitops.git      bare GitOps repository on main: one Argo CD Application per environment and cluster
    DIR/registry/               a docker-registry process; state.json records its PID and port
    DIR/standin/                the stand-in for Argo CD and the clusters (promo.local.standin); state.json as above
    DIR/standin-github/         the stand-in for GitHub (promo.local.sandbox_github), through whose pull requests
    DIR/github-tokens.json      stage and prod are written, and a token for each sandbox user (not in the tests' own
                                sandboxes, made without ``pull_requests``: there every write is a push)
    DIR/degraded-versions       chart versions the stand-in brings up Degraded, one a line (`--degrade VERSION`)
    DIR/buildah/                buildah's storage (image.storage_root)
    DIR/cache/                  promo's git caches (cache_dir)
    DIR/record-signing-key      the key the sandbox's runs sign verdicts with (records.signing_key_file, mode 0600);
                                its public half is listed in the GitOps repository's .promo/record-signers
    DIR/apps/<app>/promo.yaml   the config of each app `add_apps` added (its remote is DIR/remotes/<app>.git)

Every environment is verified against the stand-in (its Argo CD API and its version endpoint), with short times so
a promotion's verification takes a second or two.

Creating is idempotent: an existing sandbox is reused and a stopped registry or stand-in restarted, on its old port
when that is free, else on a new one written into DIR/promo.yaml. Remotes are built aside and moved into place, so a
run that stops halfway leaves a remote whole or absent, and the next run completes the rest.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from urllib.parse import urlsplit

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedSeq

from promo.config import ArgoCDCheck, EnvironmentSettings, HttpCheck, PromoConfig, VerifySettings, load_config
from promo.errors import InputError, ToolError
from promo.registry.images import registry_host
from promo.local.processes import LocalServer, running_server, state_path
from promo.local.sandbox_github import start_github, with_github
from promo.local.standin_github import GitHubStandinServer
from promo.gitops.manifests import manifest_path, validate_name
from promo.gitops.signing import ALLOWED_SIGNERS_PATH, PublicKey, SigningKey, parse_allowed_signers
from promo.local.registry import RegistryServer
from promo.local.standin import StandinServer, StandinSettings
from promo.local.standin_apps import sandbox_pace

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
DEGRADED_VERSIONS = "degraded-versions"
SIGNING_KEY_FILE = "record-signing-key"

_GIT_IDENTITY = ("-c", "user.name=promo sandbox", "-c", "user.email=sandbox@promo.local", "-c", "commit.gpgsign=false")


@dataclass(frozen=True)
class Sandbox:
    directory: Path
    config_path: Path
    registry_host: str
    registry_pid: int
    standin_url: str
    standin_pid: int
    app: str
    app_remote: Path
    gitops_remote: Path
    builder_storage: Path
    record_signer: str = ""  # the fingerprint of the key the sandbox's runs sign their records with
    github_url: str | None = None  # the GitHub stand-in's, with ``pull_requests`` (promo.local.sandbox_github)


def create_sandbox(directory: Path, *, app: str = "hello", pull_requests: bool = False) -> Sandbox:
    """Lay out (or reuse) the sandbox in ``directory`` and make sure its registry runs; with ``pull_requests`` (as
    `promo sandbox` and the demo make it), a stand-in for GitHub too (promo.local.sandbox_github)."""
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
    previous_standin = _standin_host(previous) if previous is not None else None
    app_remote = directory / "remotes" / f"{app}.git"
    gitops_remote = directory / "remotes" / GITOPS_REMOTE
    registry_root, standin_root = directory / "registry", directory / "standin"
    registry = running_server(
        RegistryServer, registry_root, previous_host, lambda port: RegistryServer.start(registry_root, port=port)
    )
    standin_settings = StandinSettings(
        port=0, gitops=gitops_remote, branch=BRANCH, degraded_versions=directory / DEGRADED_VERSIONS,
        **sandbox_pace()["standin"],
    )
    standin = running_server(
        StandinServer, standin_root, previous_standin,
        lambda port: StandinServer.start(standin_root, standin_settings.model_copy(update={"port": port or 0})),
    )  # fmt: skip
    config = _config(directory, app, app_remote, gitops_remote, registry.host, standin.url)
    directory.mkdir(parents=True, exist_ok=True)
    signer = _record_signing_key(directory).public
    if not gitops_remote.exists():
        files = {**_gitops_files(config), **_signers_file(signer)}
        _create_remote(gitops_remote, files, "Argo CD Applications for the promo sandbox")
        standin.refresh()  # it started before the remote existed
    else:
        _list_record_signer(gitops_remote, signer)
    if not app_remote.exists():
        _create_remote(app_remote, _app_files(config), f"{app}: sample app, chart and promo.yaml")
    github = None
    if pull_requests or (previous is not None and previous.forge.api_url is not None):
        if previous is not None and previous.forge.api_url is None:
            raise InputError(
                f"the sandbox in {directory} was made without a stand-in for GitHub (by an earlier promo, or a test)",
                f"stop it (`promo sandbox {directory} --stop`), remove {directory} and make it again, or use another "
                "directory",
            )
        github = start_github(directory, previous or config, app_remote, gitops_remote)
        config = with_github(config, github.url)
    degraded_versions = directory / DEGRADED_VERSIONS
    if not degraded_versions.exists():
        degraded_versions.write_text("# chart versions the stand-in brings up Degraded, one a line\n", encoding="utf-8")
    if previous is None:
        config_path.write_text(_config_text(config), encoding="utf-8")
    else:
        for path in (config_path, *sorted(directory.glob("apps/*/promo.yaml"))):  # added apps' too (add_apps)
            moves = {previous_host: registry.host, previous_standin: standin.host, **_github_move(previous, github)}
            _move_hosts(path, moves)
    return Sandbox(
        directory=directory,
        config_path=config_path,
        registry_host=registry.host,
        registry_pid=registry.pid,
        standin_url=standin.url,
        standin_pid=standin.pid,
        app=app,
        app_remote=app_remote,
        gitops_remote=gitops_remote,
        builder_storage=_builder_storage(directory),
        record_signer=signer.fingerprint(),
        github_url=github.url if github is not None else None,
    )


def _github_move(previous: PromoConfig, github: LocalServer | None) -> dict[str | None, str]:
    if github is None or previous.forge.api_url is None:
        return {}
    return {urlsplit(previous.forge.api_url).netloc: github.host}


def add_apps(sandbox: Sandbox, apps: Sequence[str]) -> dict[str, Path]:
    """More apps in the sandbox, next to its own, as a platform team runs many apps on one GitOps repository: each gets
    its app remote and its promo.yaml (DIR/apps/<app>/promo.yaml, returned by app), and their manifests join the
    shared GitOps remote in one commit; the registry and the stand-in serve them all.

    Their promo.yaml names no ``cache_dir``: where a run keeps its git caches is then the host's own
    (``$PROMO_CACHE_DIR``), as for workers on several hosts. Idempotent: what exists is kept."""
    configs = {}
    for app in apps:
        validate_name("app", app)
        app_remote = sandbox.directory / "remotes" / f"{app}.git"
        config = _config(
            sandbox.directory, app, app_remote, sandbox.gitops_remote, sandbox.registry_host, sandbox.standin_url
        ).model_copy(update={"cache_dir": None})
        if not app_remote.exists():
            _create_remote(app_remote, _app_files(config), f"{app}: sample app, chart and promo.yaml")
        config_path = sandbox.directory / "apps" / app / "promo.yaml"
        config_path.parent.mkdir(parents=True, exist_ok=True)
        if not config_path.exists():
            config_path.write_text(_config_text(config), encoding="utf-8")
        configs[app] = config
    manifests = {path: text for config in configs.values() for path, text in _gitops_files(config).items()}
    _commit_to_remote(sandbox.gitops_remote, manifests, f"Argo CD Applications for {len(configs)} more apps")
    return {app: sandbox.directory / "apps" / app / "promo.yaml" for app in configs}


def stop_sandbox(directory: Path) -> bool:
    """Stop the sandbox's registry and stand-in by their recorded PIDs; False when neither was running."""
    directory = directory.resolve()
    registry_stopped = RegistryServer.stop_recorded(state_path(directory / "registry"))
    standin_stopped = StandinServer.stop_recorded(state_path(directory / "standin"))
    github_stopped = GitHubStandinServer.stop_recorded(state_path(directory / "standin-github"))
    return registry_stopped or standin_stopped or github_stopped


def degrade_version(directory: Path, version: str) -> None:
    """From now on the sandbox's stand-in reports ``version`` Degraded wherever it runs (it re-reads the file)."""
    directory = directory.resolve()
    if not (directory / "promo.yaml").exists():
        raise InputError(f"{directory} holds no sandbox", f"create it first with `promo sandbox {directory}`")
    if not version or version.split() != [version]:
        raise InputError(f"version {version!r} is not one word", "pass a chart version such as 0.1.0-rc.abc1234")
    with (directory / DEGRADED_VERSIONS).open("a", encoding="utf-8") as knob:
        knob.write(f"{version}\n")


def _record_signing_key(directory: Path) -> SigningKey:
    """The sandbox's record signing key: made once into ``SIGNING_KEY_FILE`` (mode 0600, as ssh-keygen keeps a key),
    read back after. A file, not a Prefect Secret block: `promo sandbox` runs without Prefect, and the sandbox's
    promo.yaml names the file (``records.signing_key_file``), so its runs sign with it, with or without `promo setup`."""
    path = directory / SIGNING_KEY_FILE
    if path.exists():
        return SigningKey.from_openssh(path.read_text(encoding="utf-8"))
    key = SigningKey.generate()
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as out:
        out.write(key.to_openssh())
    return key


def _signers_file(public: PublicKey, existing: str | None = None) -> dict[str, str]:
    """The GitOps repository's allowed-signers file listing ``public`` (kept as it is when it does already)."""
    text = existing or "# Keys whose signatures promo believes on its records (refs/promo/*). See docs/records.md.\n"
    if public in parse_allowed_signers(text):
        return {ALLOWED_SIGNERS_PATH: text}
    return {ALLOWED_SIGNERS_PATH: text.rstrip("\n") + "\n" + public.allowed_signers_line() + "\n"}


def _list_record_signer(gitops_remote: Path, public: PublicKey) -> None:
    """An existing sandbox's GitOps repository (made before records were signed, say) lists ``public`` too."""
    try:
        existing = _git("--git-dir", str(gitops_remote), "show", f"{BRANCH}:{ALLOWED_SIGNERS_PATH}")
    except ToolError:  # no such file yet
        existing = None
    if existing is None or public not in parse_allowed_signers(existing):
        _commit_to_remote(gitops_remote, _signers_file(public, existing), "promo sandbox: allow the record signing key")


def _builder_storage(directory: Path) -> Path:
    return directory / "buildah"


def _standin_host(config: PromoConfig) -> str | None:
    """host:port of the stand-in promo.yaml verifies against; None in a sandbox made before it had one."""
    for env in config.environments:
        if env.verify is not None and env.verify.argocd is not None:
            return urlsplit(env.verify.argocd.url).netloc
    return None


def _config(
    directory: Path, app: str, app_remote: Path, gitops_remote: Path, host: str, standin_url: str
) -> PromoConfig:
    # The stand-in listens on loopback only and serves a throwaway world, so it asks for no token.
    verify = VerifySettings(
        argocd=ArgoCDCheck(url=standin_url, token="none"),
        http=HttpCheck(url=f"{standin_url}/clusters/{{env}}/{{cluster}}/{{app}}/version"),
        **sandbox_pace()["verify"],  # short: a promotion's verification takes a second or two, not minutes
    )
    return PromoConfig.model_validate(
        {
            "app": app,
            "app_repo": {"url": app_remote.as_uri(), "branch": BRANCH},
            "gitops": {"url": gitops_remote.as_uri(), "branch": BRANCH},
            "chart": {"path": f"charts/{app}", "repository": f"{host}/{CHART_NAMESPACE}"},
            "image": {"repository": f"{host}/{app}", "storage_root": _builder_storage(directory)},
            "environments": [env.model_copy(update={"verify": verify}) for env in ENVIRONMENTS],
            "gate": {"poll_interval_seconds": 0.5},
            "cache_dir": directory / "cache",
            "records": {"signing_key_file": directory / SIGNING_KEY_FILE},
        }
    )


def _config_text(config: PromoConfig) -> str:
    data = config.model_dump(mode="json", exclude_defaults=True)
    data["environments"] = [env.model_dump(mode="json") for env in config.environments]  # all of them, in full
    body = io.StringIO()
    YAML().dump(_short_lists_inline(data), body)
    return (
        "# promo.yaml of a promo sandbox, written by `promo sandbox`. The registry's and the stand-in's ports are\n"
        "# rewritten here when a restart has to move them; registry.auth is anonymous and loopback registries are\n"
        "# plain HTTP. verify: points at the stand-in for Argo CD and the clusters (promo/local/standin.py).\n"
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


def _move_hosts(config_path: Path, moves: Mapping[str | None, str]) -> None:
    """Rewrite each old ``host:port`` to its new one in one pass, so a server taking another's old port is not
    rewritten twice; a port is matched whole (``:80`` never inside ``:8080``)."""
    moved = {old: new for old, new in moves.items() if old is not None and old != new}
    if not moved:
        return
    pattern = re.compile("|".join(f"{re.escape(old)}(?![0-9])" for old in moved))
    text = config_path.read_text(encoding="utf-8")
    config_path.write_text(pattern.sub(lambda match: moved[match.group()], text), encoding="utf-8")


def _app_files(config: PromoConfig) -> dict[str, str]:
    placeholders = {"__APP__": config.app, "__IMAGE_REPOSITORY__": config.image.repository}
    files = _sample_tree(resources.files("promo") / "sample-world" / "app", placeholders)
    files["promo.yaml"] = _config_text(config)
    return files


def _gitops_files(config: PromoConfig) -> dict[str, str]:
    templates = resources.files("promo") / "sample-world" / "gitops"
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


def _commit_to_remote(remote: Path, files: Mapping[str, str], message: str) -> None:
    """One commit on ``remote``'s main writing ``files`` (none when they are there already)."""
    with tempfile.TemporaryDirectory(dir=remote.parent, prefix=".adding-") as scratch:
        work = Path(scratch) / "work"
        _git("clone", "--quiet", "--branch", BRANCH, str(remote), str(work))
        for path, text in files.items():
            target = work / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(text.encode("utf-8"))
        _git("-C", str(work), "add", "--all")
        if _git("-C", str(work), "status", "--porcelain"):
            _git("-C", str(work), *_GIT_IDENTITY, "commit", "--quiet", "--message", message)
            _git("-C", str(work), "push", "--quiet", "origin", f"{BRANCH}:{BRANCH}")


def _git(*args: str) -> str:
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
    return result.stdout
