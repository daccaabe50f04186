"""The one typed configuration of promo, loaded from ``promo.yaml`` and validated before any work starts.

Where the file is found: the ``--config`` path, else ``$PROMO_CONFIG``, else ``./promo.yaml``. Deployments read
the same document from the Prefect server instead, where `promo setup` stored it (promo/flows/stored_config.py).
Credentials never live in this file: registry passwords come from the environment or a Prefect Secret block (or
ECR's token via boto3).
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from promo.errors import ConfigError, InputError
from promo.gitops.manifests import validate_name
from promo.windows import parse_windows

CONFIG_ENV_VAR = "PROMO_CONFIG"
DEFAULT_CONFIG_NAME = "promo.yaml"

_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://")
_DURATION = re.compile(r"(?P<number>[0-9]+)\s*(?P<unit>[smhd]?)")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _dns_label(kind: str, value: str) -> str:
    """Names become GitOps path segments; pydantic reports a ValueError as this setting's problem."""
    try:
        return validate_name(kind, value)
    except InputError as error:
        raise ValueError(f"{error.cause} ({error.fix})") from None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RepoSettings(_Model):
    """A git remote: ``file://``, ``https://``, ``ssh://`` or a path relative to promo.yaml."""

    url: str
    branch: str = "main"


class GitOpsSettings(RepoSettings):
    root: str = "registry/environments"
    repository: str | None = Field(
        default=None, description="owner/name on GitHub, for write: pull-request; default: read from url"
    )


class ImageSettings(_Model):
    repository: str = Field(description="host/path of the image repository, e.g. 1234.dkr.ecr.eu-west-1.amazonaws.com/hello")
    context: str = "."
    containerfile: str = "Containerfile"
    builder: Literal["auto", "buildah", "docker"] = "auto"
    storage_root: Path | None = Field(default=None, description="buildah's storage directory; default: buildah's own")


class ChartSettings(_Model):
    path: str = Field(description="the chart directory inside the app repository, e.g. charts/hello")
    name: str | None = Field(default=None, description="the chart's name in Chart.yaml; default: the app's name")
    repository: str = Field(description="OCI namespace charts are pushed to, as in `helm push X.tgz oci://<repository>`")


class RegistrySettings(_Model):
    auth: Literal["anonymous", "basic", "ecr"] = "anonymous"
    username: str | None = Field(default=None, description="auth: basic — when $PROMO_REGISTRY_USERNAME is unset")
    insecure: bool | None = Field(default=None, description="plain HTTP; default: only for loopback hosts")


def duration_seconds(value: object) -> int:
    """``30m``, ``2h``, ``45s``, ``1d`` or a number of seconds, as whole seconds (for soak times and timeouts)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, (int, float)):
        seconds = value
    else:
        match = _DURATION.fullmatch(str(value).strip())
        if match is None:
            raise ValueError(f"{value!r} is not a duration: write e.g. 45s, 30m, 2h or 1d")
        seconds = int(match["number"]) * _DURATION_UNITS[match["unit"] or "s"]
    if seconds < 0:
        raise ValueError(f"{value!r} is a negative duration")
    return int(seconds)


Duration = Annotated[int, BeforeValidator(duration_seconds)]


class ArgoCDCheck(_Model):
    """Argo CD's view of each cluster's Application: synced at the chart version, sync finished, healthy."""

    url: str = Field(description="Argo CD's base URL, e.g. https://argocd.example.com")
    application: str = Field(
        default="{app}-{env}-{cluster}", description="the Application's name per cluster; {app}, {env}, {cluster}"
    )
    app_namespace: str | None = Field(default=None, description="?appNamespace= for Applications outside argocd")
    token: Literal["env", "secret", "none"] = "env"
    token_env: str = Field(default="ARGOCD_TOKEN", description="token: env reads the API token from this variable")
    secret_block: str = Field(default="argocd-token", description="token: secret reads this Prefect Secret block")


class HttpCheck(_Model):
    """A URL per cluster that answers 2xx with the deployed chart version in its body."""

    url: str = Field(description="e.g. https://{cluster}.example.com/{app}/version; {app}, {env}, {cluster}")


class VerifySettings(_Model):
    argocd: ArgoCDCheck | None = None
    http: HttpCheck | None = None
    timeout: Duration = Field(default=600, gt=0, description="how long a deployment may take to come up")
    healthy_for: Duration = Field(default=5, ge=0, description="how long Healthy must hold before it counts")
    poll_interval_seconds: float = Field(default=2.0, gt=0)

    @model_validator(mode="after")
    def _one_check_at_least(self) -> VerifySettings:
        if self.argocd is None and self.http is None:
            raise ValueError("verify needs argocd, http or both")
        return self


class EnvironmentSettings(_Model):
    name: str
    clusters: list[str] = Field(min_length=1)
    approvers: list[str] = Field(default_factory=list, description="who may approve promotions into it; empty: anyone")
    verify: VerifySettings | None = Field(default=None, description="how a write into it is verified; none: not checked")
    soak: Duration = Field(default=0, description="how long a version runs here, verified, before it may move on")
    on_failure: Literal["none", "rollback"] = Field(default="none", description="after a failed verification")
    windows: list[str] = Field(
        default_factory=list,
        description="when writes into it may happen, e.g. 'Mon-Thu 09:00-16:00 Europe/Berlin'; empty: any time",
    )
    write: Literal["push", "pull-request"] = Field(
        default="push", description="push the GitOps commit, or open a pull request with it (docs/github.md)"
    )
    approval: Literal["prefect", "pull-request"] | None = Field(
        default=None, description="the gate: the Prefect form, or a GitHub review; default: pull-request with "
        "write: pull-request, else prefect"
    )
    merge_method: Literal["merge", "squash"] = Field(default="merge", description="write: pull-request only")

    @model_validator(mode="after")
    def _review_gate_needs_a_pull_request(self) -> EnvironmentSettings:
        if self.approval == "pull-request" and self.write != "pull-request":
            raise ValueError("approval: pull-request needs write: pull-request (a review needs a pull request)")
        return self

    @property
    def gate_kind(self) -> Literal["prefect", "pull-request"]:
        """Who decides the gate into this environment: the Prefect form, or a GitHub review."""
        return self.approval or ("pull-request" if self.write == "pull-request" else "prefect")

    @field_validator("name")
    @classmethod
    def _name_is_label(cls, value: str) -> str:
        return _dns_label("environment", value)

    @field_validator("clusters")
    @classmethod
    def _clusters_are_labels(cls, value: list[str]) -> list[str]:
        return [_dns_label("cluster", cluster) for cluster in value]

    @field_validator("windows")
    @classmethod
    def _windows_parse(cls, value: list[str]) -> list[str]:
        parse_windows(value)  # its ValueError names the window and what is wrong with it
        return value


class ForgeSettings(_Model):
    """Where releases and pull requests live. Tokens never live here: only where to find them."""

    kind: Literal["local", "github"] = "local"
    repository: str | None = Field(default=None, description="owner/name on GitHub; default: read from app_repo.url")
    api_url: str | None = Field(default=None, description="GitHub Enterprise API URL; default https://api.github.com")
    token: Literal["env", "secret", "app"] = "env"
    token_env: str = Field(default="GITHUB_TOKEN", description="token: env reads the token from this variable")
    secret_block: str = Field(default="github-token", description="token: secret reads this Prefect Secret block")
    app_id: str | None = Field(default=None, description="token: app — the GitHub App's id")
    app_private_key_env: str = Field(default="GITHUB_APP_PRIVATE_KEY", description="token: app — PEM key variable")
    app_installation_id: int | None = None


class GateSettings(_Model):
    timeout_seconds: int = Field(default=7 * 24 * 3600, gt=0)
    poll_interval_seconds: float = Field(default=1.0, gt=0)  # a local pause polls; suspended runs do not


class NotifySettings(_Model):
    """Who is told when a gate waits or a run fails: promo names a Prefect notification block (Slack, Microsoft
    Teams, a webhook, e-mail...) and `promo setup` points Prefect automations at it. The block holds the URL or
    credentials, so none of them live in this file."""

    block: str = Field(min_length=1, description="the name of a Prefect notification block, e.g. promo-approvals")


class RecordSettings(_Model):
    """How promo signs its records (verdicts): docs/records.md. The key is never in this file, only where it is."""

    signing_key_file: Path | None = Field(
        default=None,
        description="a file holding the private key (a local world: `promo sandbox` sets it); default: "
        "$PROMO_RECORD_SIGNING_KEY, else the Prefect Secret block promo-record-signing-key that `promo setup` makes",
    )


def default_environments() -> list[EnvironmentSettings]:
    return [
        EnvironmentSettings(name="dev", clusters=["preprod"]),
        EnvironmentSettings(name="test", clusters=["preprod"]),
        EnvironmentSettings(name="stage", clusters=["preprod"]),
        EnvironmentSettings(name="prod", clusters=["prod"]),
    ]


class PromoConfig(_Model):
    app: str
    app_repo: RepoSettings
    gitops: GitOpsSettings
    chart: ChartSettings
    image: ImageSettings
    registry: RegistrySettings = RegistrySettings()
    environments: list[EnvironmentSettings] = Field(default_factory=default_environments, min_length=2)
    forge: ForgeSettings = ForgeSettings()
    gate: GateSettings = GateSettings()
    notify: NotifySettings | None = Field(default=None, description="where gate and failure notices go; none: nowhere")
    cache_dir: Path | None = Field(default=None, description="git caches; default $PROMO_CACHE_DIR or ~/.cache/promo")
    records: RecordSettings = RecordSettings()

    @field_validator("app")
    @classmethod
    def _app_is_label(cls, value: str) -> str:
        return _dns_label("app", value)

    @model_validator(mode="after")
    def _environment_names_unique(self) -> PromoConfig:
        names = [env.name for env in self.environments]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"environment names must be unique, repeated: {', '.join(duplicates)}")
        return self

    @model_validator(mode="after")
    def _pull_requests_need_github(self) -> PromoConfig:
        writes = [env.name for env in self.environments if env.write == "pull-request"]
        if writes and self.forge.kind != "github":
            raise ValueError(f"write: pull-request ({', '.join(writes)}) needs forge.kind: github")
        return self

    # Environments are an ordered pipeline: each one is promoted from the one before it.
    @property
    def environment_names(self) -> list[str]:
        return [env.name for env in self.environments]

    def environment(self, name: str) -> EnvironmentSettings:
        for env in self.environments:
            if env.name == name:
                return env
        raise InputError(
            f"unknown environment {name!r}",
            f"use one of: {', '.join(self.environment_names)} (as listed under environments in promo.yaml)",
        )

    def source_of(self, target: str) -> EnvironmentSettings:
        """The environment a promotion into ``target`` reads its version from."""
        index = self.environment_names.index(self.environment(target).name)
        if index == 0:
            raise InputError(
                f"{target!r} is the first environment and has no source to promote from",
                "publish a build into it with `promo publish-dev` instead",
            )
        return self.environments[index - 1]

    @property
    def first_environment(self) -> EnvironmentSettings:
        return self.environments[0]

    @property
    def chart_name(self) -> str:
        return self.chart.name or self.app

    @property
    def resolved_cache_dir(self) -> Path:
        if self.cache_dir is not None:
            return self.cache_dir
        return Path(os.environ.get("PROMO_CACHE_DIR") or Path.home() / ".cache" / "promo")


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit)
    return Path(os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_NAME)


def load_config(path: str | os.PathLike[str] | None = None) -> PromoConfig:
    """Read and validate promo.yaml; every problem is one ConfigError line naming the file and the fix."""
    file = config_path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"config file {file} not found",
            f"pass --config PATH, set {CONFIG_ENV_VAR}, or run from the app repository that holds promo.yaml",
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror}", "check the path and its permissions") from None
    try:
        data = YAML(typ="safe").load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{file} is not valid YAML{where}", "fix the YAML syntax") from None
    if isinstance(data, dict):
        _resolve_relative_urls(data, file.parent)
    return validate_config(data, str(file))


def validate_config(data: object, source: str) -> PromoConfig:
    """The settings in ``data`` (promo.yaml's document, wherever it was kept), validated; ``source`` names it in the
    one-line ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must be a mapping of settings, not {type(data).__name__}", "see docs/config.md")
    try:
        return PromoConfig.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        # A misspelt key also makes the key it meant "missing": name the misspelling first, it is the cause.
        first = next((error for error in errors if error["type"] == "extra_forbidden"), errors[0])
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        message = first["msg"].removeprefix("Value error, ")
        fix = "fix that setting (see docs/config.md)"
        if first["type"] == "extra_forbidden":
            message = "unknown setting"
            known = _setting_names(first["loc"][:-1])
            close = difflib.get_close_matches(str(first["loc"][-1]), known, n=1)
            fix = f"did you mean {close[0]!r}?" if close else f"the settings here are: {', '.join(sorted(known))}"
        extra = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(f"{source}: {where}: {message}{extra}", fix) from None


def _setting_names(location: tuple[int | str, ...]) -> list[str]:
    """The keys promo.yaml may hold at ``location`` (a path of keys and list indexes from the top)."""
    model: type[BaseModel] = PromoConfig
    for part in location:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        nested = [kind for kind in _types_in(field.annotation) if isinstance(kind, type) and issubclass(kind, BaseModel)]
        if not nested:
            return []
        model = nested[0]
    return list(model.model_fields)


def _types_in(annotation: Any) -> list[Any]:
    """``list[EnvironmentSettings] | None`` -> its types, however deeply nested."""
    arguments = get_args(annotation)
    return [annotation] if not arguments else [kind for argument in arguments for kind in _types_in(argument)]


def config_document(config: PromoConfig) -> dict[str, Any]:
    """What promo.yaml set, as JSON-ready data that `validate_config` reads back into the same config: unset
    settings stay out, so a default promo changes later applies to a stored config too."""
    return config.model_dump(mode="json", exclude_unset=True)


def _resolve_relative_urls(data: dict, base: Path) -> None:
    """A remote given as a plain path is relative to promo.yaml, so a sandbox or a checkout can move."""
    for key in ("app_repo", "gitops"):
        section = data.get(key)
        if isinstance(section, dict) and isinstance(section.get("url"), str):
            url = section["url"]
            if not _SCHEME.match(url) and ":" not in url.split("/")[0]:
                section["url"] = (base / url).resolve().as_uri()
