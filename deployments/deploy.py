"""Register promo on a Prefect server: work pool, the app's config, environment limits, secret placeholders, the
record signing key, one deployment per flow.

Every step is idempotent and says what it did (``created``, ``updated``, ``exists``, ``skipped``), so ``promo setup``
can be run again after an upgrade or a promo.yaml change. The validated promo.yaml is stored on the server as the block
``promo-config/<app>`` (promo/flows/stored_config.py); deployments are named ``<flow-name>/<app>`` and preset the
parameter ``app``, never a path, so one server holds the pipelines of many apps and any worker, on any host or in
an empty pod, runs any of them.

Flows run from the installed code by default (module entrypoints such as ``promo.flows.promote.promote_test``): a worker
needs promo installed, exactly like the worker image in docker/. ``source=`` loads them from a directory or a git
URL instead (``Flow.from_source``), for workers that pull the code at run time.

To add a flow, add one ``FlowSpec`` to ``FLOWS``. A flow whose module is missing or does not import is skipped (and
setup's output says why); the others still deploy.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from prefect import Flow
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.events import DeploymentEventTrigger
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.schedules import Cron, Interval
from prefect.workers.base import BaseWorker

from promo.deployments.kubernetes import KUBERNETES, kubernetes_base_job_template
from promo.deployments.notify import ensure_notifications
from promo.flows.events import (
    BRANCH_LABEL,
    HEAD_REF_LABEL,
    PULL_REQUEST_DECISION_EVENTS,
    PUSH_EVENT,
    REPOSITORY_LABEL,
    push_branches,
    push_resource_id,
)
from promo.tasks.limits import RELEASE, ensure_environment_limits, ensure_limits, gitops_limit_name
from promo.flows.stored_config import block_name, store_config
from promo.config import PromoConfig, load_config
from promo.errors import InputError, PromoError
from promo.clients import gitops_github_repository, gitops_repo
from promo.gitops.signing import ALLOWED_SIGNERS_PATH
from promo.signing_key import SIGNING_KEY_BLOCK, ensure_signing_key, list_signer, record_signing_key
from promo.registry.credentials import PASSWORD_BLOCK
from promo.release.pull_gate import environment_prefix
from promo.secrets import SECRET_PLACEHOLDER

DEFAULT_WORK_POOL = "promo"
DEFAULT_POOL_TYPE = "process"
NIGHTLY_SLUG = "nightly"
NIGHTLY_CRON = "0 2 * * *"
# Secret blocks promo's operators fill in (`prefect block create secret`, or the UI); setup never overwrites them.
# promo reads them only once they hold something other than the placeholder.
SECRET_BLOCKS = (PASSWORD_BLOCK, "github-token")

Status = Literal["created", "updated", "exists", "skipped", "removed"]


@dataclass(frozen=True)
class FlowSpec:
    """One deployable flow: where it lives, and how it is started besides by hand."""

    name: str  # the flow's name, the first half of the deployment name
    module: str
    function: str
    on_push: bool = False  # started by git.push events on the publishing branches
    nightly: bool = False  # a nightly schedule, declared inactive; switch it on in the UI or with `prefect deployment schedule`
    every_minute: bool = False  # a schedule every minute, active (the pull-request watcher)
    on_decision: bool = False  # started by a pull request of the app decided on GitHub (a relayed webhook)

    @property
    def module_entrypoint(self) -> str:
        return f"{self.module}.{self.function}"

    @property
    def file_entrypoint(self) -> str:
        # the repository keeps flows/ at its top; the installed package maps it to promo.flows
        return f"{self.module.removeprefix('promo.').replace('.', '/')}.py:{self.function}"


FLOWS: tuple[FlowSpec, ...] = (
    FlowSpec("publish-dev", "promo.flows.publish_dev", "publish_dev", on_push=True, nightly=True),
    FlowSpec("promote-test", "promo.flows.promote", "promote_test"),
    FlowSpec("promote-stage", "promo.flows.promote", "promote_stage"),
    FlowSpec("release-prod", "promo.flows.release_prod", "release_prod"),
    FlowSpec("hotfix", "promo.flows.hotfix", "hotfix"),
    FlowSpec("bump-version", "promo.flows.bump_version", "bump_version"),
    FlowSpec("rollback", "promo.flows.rollback", "rollback"),
    FlowSpec(
        "watch-pull-requests", "promo.flows.watch_pull_requests", "watch_pull_requests", every_minute=True,
        on_decision=True,
    ),
)


@dataclass(frozen=True)
class Outcome:
    kind: str  # "work pool", "config", "limit", "secret", "deployment", "automation"
    name: str
    status: Status
    detail: str = ""

    def line(self) -> str:
        return f"{self.status:<8} {self.kind} {self.name}" + (f" ({self.detail})" if self.detail else "")


def setup_all(
    config_path: str | Path | None = None,
    work_pool: str = DEFAULT_WORK_POOL,
    *,
    pool_type: str = DEFAULT_POOL_TYPE,
    source: str | Path | None = None,
) -> list[Outcome]:
    """Everything `promo setup` does, in order; the Prefect API is the one in the current settings."""
    config = load_config(config_path)
    outcomes = [ensure_work_pool(work_pool, pool_type), Outcome("config", block_name(config.app), store_config(config))]
    outcomes += [
        Outcome("limit", name, "created" if created else "exists", "1 slot" if created else "")
        for name, created in [
            *ensure_environment_limits(config.app, [*config.environment_names, RELEASE]),
            *ensure_limits([gitops_limit_name(config.gitops.url)]),  # the GitOps repository's write lock
        ]
    ]
    outcomes += ensure_secret_placeholders()
    outcomes += ensure_signing(config)
    outcomes += deploy_all(config, work_pool, source=source)
    outcomes += [  # last: a notify.block that does not exist stops setup only after everything else is in place
        Outcome("automation", name, status, detail)
        for name, status, detail in ensure_notifications(config, [spec.name for spec in FLOWS])
    ]
    return outcomes


# A process worker with no job command starts each run through a workspace supervisor: a second interpreter that
# imports Prefect before it starts the engine, ~1.5 s of every run and of every approval under a deployment on a
# quiet machine, several seconds under load (bench `approval`). With a command it starts the engine directly.
# ``python`` is the one on the worker's PATH: promo's own workers put their interpreter first
# (promo.local.prefect_server.worker_path), and the worker image has only one.
PROCESS_ENGINE_COMMAND = "python -m prefect.engine"


def job_template(template: dict, pool_type: str) -> dict:
    """The pool type's default base job template; a process pool's command defaults to the engine itself."""
    if pool_type == "process":
        template["variables"]["properties"]["command"]["default"] = PROCESS_ENGINE_COMMAND
    return template


def ensure_work_pool(name: str = DEFAULT_WORK_POOL, pool_type: str = DEFAULT_POOL_TYPE) -> Outcome:
    """Create the pool with its type's default job template when missing (for kubernetes, promo's: its Jobs run the
    promo worker image); an existing pool is never changed."""
    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
            return Outcome("work pool", name, "exists", pool.type)
        except ObjectNotFound:
            pass
        template = (
            kubernetes_base_job_template()
            if pool_type == KUBERNETES
            else job_template(_default_job_template(name, pool_type), pool_type)
        )
        try:
            client.create_work_pool(WorkPoolCreate(name=name, type=pool_type, base_job_template=template))
        except ObjectAlreadyExists:
            return Outcome("work pool", name, "exists", pool_type)
    return Outcome("work pool", name, "created", pool_type)


def _default_job_template(name: str, pool_type: str) -> dict:
    worker = BaseWorker.get_worker_class_from_type(pool_type)
    if worker is None:
        raise InputError(
            f"no worker for work pool type {pool_type!r} is installed here",
            f"install its Prefect integration (e.g. prefect-docker), or create the pool first: "
            f"prefect work-pool create {name} --type {pool_type}",
        )
    return worker.get_default_base_job_template()


def ensure_secret_placeholders(names: Iterable[str] = SECRET_BLOCKS) -> list[Outcome]:
    """Secret blocks holding a placeholder, created only when missing: a value someone set is never overwritten."""
    outcomes = []
    with get_client(sync_client=True) as client:
        for name in names:
            try:
                client.read_block_document_by_name(name, block_type_slug="secret", include_secrets=False)
                outcomes.append(Outcome("secret", name, "exists"))
                continue
            except ObjectNotFound:
                pass
            try:
                Secret(value=SECRET_PLACEHOLDER).save(name, overwrite=False)
            except ValueError:  # created meanwhile: save refuses to overwrite
                outcomes.append(Outcome("secret", name, "exists"))
                continue
            outcomes.append(Outcome("secret", name, "created", f"placeholder {SECRET_PLACEHOLDER!r}: set the real value"))
    return outcomes


def ensure_signing(config: PromoConfig) -> list[Outcome]:
    """The key promo signs its records with (a Secret block, made once, never replaced) and its public half in the
    GitOps repository's allowed-signers file, where readers of records find it. A branch that refuses promo's push
    (protected) is a note with the line to add by hand: setup carries on, and verification will say what is missing."""
    key_file = config.records.signing_key_file
    try:
        key, made = (record_signing_key(key_file), False) if key_file is not None else ensure_signing_key()
    except PromoError as error:
        return [Outcome("secret", SIGNING_KEY_BLOCK, "skipped", str(error))]
    kind, name = ("key file", str(key_file)) if key_file is not None else ("secret", SIGNING_KEY_BLOCK)
    outcomes = [Outcome(kind, name, "created" if made else "exists", key.public.fingerprint())]
    try:
        listed = list_signer(gitops_repo(config).mirror, config.gitops.branch, key.public)
    except PromoError as error:
        detail = f"{error.cause}; add this line to it by hand: {key.public.allowed_signers_line()}"
        return [*outcomes, Outcome("signer", ALLOWED_SIGNERS_PATH, "skipped", detail)]
    status: Status = "created" if listed else "exists"
    return [*outcomes, Outcome("signer", ALLOWED_SIGNERS_PATH, status, key.public.fingerprint())]


def deploy_all(
    config: PromoConfig,
    work_pool: str = DEFAULT_WORK_POOL,
    *,
    source: str | Path | None = None,
    flows: Iterable[FlowSpec] = FLOWS,
) -> list[Outcome]:
    """One deployment ``<flow>/<app>`` per importable flow in ``flows``, on ``work_pool``, created or updated."""
    outcomes = []
    for spec in flows:
        flow, why_not = _load(spec)
        if flow is None:
            outcomes.append(Outcome("deployment", f"{spec.name}/{config.app}", "skipped", why_not))
            continue
        existed = _existing_schedules(f"{flow.name}/{config.app}")  # the flow's own name makes the deployment's
        nightly_on = bool(existed and existed.get(NIGHTLY_SLUG))  # switched on by someone: stays on
        deployment = build_deployment(spec, flow, config, source=source, nightly_active=nightly_on)
        deployment.apply(work_pool_name=work_pool)
        status: Status = "updated" if existed is not None else "created"
        outcomes.append(Outcome("deployment", deployment.full_name, status, _describe(spec, config)))
    return outcomes


def build_deployment(
    spec: FlowSpec,
    flow: Flow,
    config: PromoConfig,
    *,
    source: str | Path | None = None,
    nightly_active: bool = False,
) -> RunnerDeployment:
    if source is not None:
        flow = Flow.from_source(source=str(source), entrypoint=spec.file_entrypoint)
    # the app names the config stored on the server: a run reads it there, wherever its worker runs
    parameters = {"app": config.app} if "app" in flow.parameters.properties else {}
    return flow.to_deployment(
        name=config.app,
        parameters=parameters,
        triggers=triggers(spec, config) or None,
        schedules=[nightly_schedule(nightly_active)] if spec.nightly else [Interval(60)] if spec.every_minute else None,
        tags=["promo", f"app:{config.app}"],
        description=(flow.description or "").strip() or None,
        entrypoint_type=EntrypointType.MODULE_PATH if source is None else EntrypointType.FILE_PATH,
    )


def triggers(spec: FlowSpec, config: PromoConfig) -> list[DeploymentEventTrigger]:
    """The events that start the flow's deployment, besides a person and its schedule."""
    found = [push_trigger(config)] if spec.on_push else []
    decision = decision_trigger(config) if spec.on_decision else None
    return found + ([decision] if decision is not None else [])


def push_trigger(config: PromoConfig) -> DeploymentEventTrigger:
    """git.push for this app on its branch or a hotfix-* branch starts publish-dev with that commit."""
    return DeploymentEventTrigger(
        name=f"publish-dev/{config.app} on git.push",
        description=f"Publish {config.app} to {config.first_environment.name} when CI reports a push (promo notify-push)",
        expect={PUSH_EVENT},
        match={"prefect.resource.id": push_resource_id(config.app), BRANCH_LABEL: push_branches(config.app_repo.branch)},
        parameters={"sha": "{{ event.payload.sha }}", "branch": "{{ event.payload.branch }}"},
    )


def decision_trigger(config: PromoConfig) -> DeploymentEventTrigger | None:
    """A review submitted on, or a close of, a pull request of this app's promotions in its GitOps repository starts
    the watcher at once, so a decision resumes its run in seconds; the schedule every minute stays as the backstop
    (a relay down, a delivery lost). None when no environment writes through a pull request.

    Every event fires (``within`` 0): a burst of them starts a watcher each, which is harmless, since a watcher only
    reads the pull requests and the server resumes a suspended run once (a second resume is refused and logged).
    A ``within`` window would not merge a burst into one run: it would drop the events after the first, and with them
    the decision that came second, until the next minute. A redelivery of one delivery is one event id, evaluated once.
    """
    environments = [env.name for env in config.environments if env.write == "pull-request"]
    repository = gitops_github_repository(config)
    if not environments or repository is None:
        return None
    return DeploymentEventTrigger(
        name=f"watch-pull-requests/{config.app} on a pull request decision",
        description=f"Resume {config.app}'s runs whose pull request in {repository} was reviewed or closed "
        "(a GitHub webhook, relayed by promo relay-github-webhooks or a Prefect Cloud webhook)",
        expect=set(PULL_REQUEST_DECISION_EVENTS),
        match={
            REPOSITORY_LABEL: repository.lower(),  # as the relay sends it: GitHub's names are not case-sensitive
            HEAD_REF_LABEL: [f"{environment_prefix(config.app, env)}*" for env in environments],
        },
    )


def nightly_schedule(active: bool = False):
    return Cron(NIGHTLY_CRON, timezone="UTC", active=active, slug=NIGHTLY_SLUG)


def _load(spec: FlowSpec) -> tuple[Flow | None, str]:
    """The flow, or None and why not: a flow still being written (missing module, failing import) is skipped."""
    try:
        module = importlib.import_module(spec.module)
    except ModuleNotFoundError as error:
        if error.name == spec.module:
            return None, f"no module {spec.module}"
        return None, f"{spec.module} does not import: {error}"
    except Exception as error:  # noqa: BLE001 - reported in setup's output, the other flows still deploy
        return None, f"{spec.module} does not import: {type(error).__name__}: {error}"
    flow = getattr(module, spec.function, None)
    if not isinstance(flow, Flow):
        return None, f"{spec.module} has no flow {spec.function}"
    return flow, ""


def _existing_schedules(full_name: str) -> dict[str, bool] | None:
    """The deployment's schedules as {slug: active}, or None when the deployment does not exist yet."""
    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(full_name)
        except ObjectNotFound:
            return None
    return {schedule.slug: schedule.active for schedule in deployment.schedules if schedule.slug}


def _describe(spec: FlowSpec, config: PromoConfig) -> str:
    parts = []
    if spec.on_push:
        parts.append(f"on {PUSH_EVENT}")
    if spec.nightly:
        parts.append(f"nightly {NIGHTLY_CRON} UTC, inactive unless switched on")
    if spec.every_minute:
        parts.append("every minute")
    if spec.on_decision and decision_trigger(config) is not None:
        parts.append(f"on {' or '.join(PULL_REQUEST_DECISION_EVENTS)}")
    return ", ".join(parts)
