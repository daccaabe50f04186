"""The stand-in's Applications (see promo.local.standin): one Application's life, and how Argo CD's API shows it.

An Application moves only by times handed in, never by reading the clock itself: OutOfSync, a sync operation
``sync_delay`` later that runs ``operation_seconds``, then Progressing for ``progressing_seconds`` and Healthy (or
Degraded, for a version the ``degraded_versions`` knob lists). A version the ``failed_syncs`` knob lists instead ends
its sync ``Failed`` or ``Error`` with the knob's message and deploys nothing; as Argo CD's automated sync, the stand-in
does not try that revision again until git asks for another one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from promo.errors import InputError
from promo.gitops.manifests import DEFAULT_ROOT

log = logging.getLogger("promo.local.standin")

HISTORY_LIMIT = 10  # Argo CD's default revisionHistoryLimit
SYNC_RUNNING_MESSAGE = "one or more tasks are running"
SYNC_DONE_MESSAGE = "successfully synced (all tasks run)"
FAILED_PHASES = ("Failed", "Error")


class StandinSettings(BaseModel):
    """What the stand-in follows and how fast its Applications move; written as JSON next to its log."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    port: int
    gitops: Path = Field(description="the bare GitOps repository")
    branch: str = "main"
    root: str = DEFAULT_ROOT
    application: str = "{app}-{env}-{cluster}"
    namespace: str = "argocd"
    poll_seconds: float = Field(default=0.5, gt=0)
    sync_delay: float = Field(default=1.0, ge=0, description="OutOfSync before the sync operation starts")
    operation_seconds: float = Field(default=0.5, ge=0, description="how long a sync operation runs")
    progressing_seconds: float = Field(default=1.0, ge=0, description="Progressing after a sync, before Healthy")
    degraded_versions: Path | None = Field(default=None, description="chart versions that come up Degraded")
    failed_syncs: Path | None = Field(
        default=None, description="lines '<chart version> Failed|Error <message>': how a sync of that version ends"
    )
    create_delay: float = Field(default=0.0, ge=0, description="a new manifest is an Application this much later")
    refresh_seconds: float = Field(default=0.0, ge=0, description="how long the answer to ?refresh= takes")
    token_file: Path | None = Field(default=None, description="the API then demands this bearer token")


# How fast a sandbox's world moves, by ``$PROMO_STANDIN_PACE``: ``demo`` (the default) shows each phase of a deploy
# (OutOfSync, a sync operation, Progressing, Healthy held for a second) as Argo CD would, in a couple of seconds;
# ``test`` moves at once and verification holds Healthy for no time, so a test waits for promo, not for a clock.
# ``standin`` are StandinSettings fields, ``verify`` the timings of the sandbox promo.yaml's verify: settings.
PACE_VARIABLE = "PROMO_STANDIN_PACE"
PACES: dict[str, dict[str, dict[str, float]]] = {
    "demo": {
        "standin": {"poll_seconds": 0.5, "sync_delay": 0.3, "operation_seconds": 0.2, "progressing_seconds": 0.3},
        "verify": {"timeout": 60, "healthy_for": 1, "poll_interval_seconds": 0.25},
    },
    "test": {
        "standin": {"poll_seconds": 0.5, "sync_delay": 0.0, "operation_seconds": 0.0, "progressing_seconds": 0.0},
        "verify": {"timeout": 60, "healthy_for": 0, "poll_interval_seconds": 0.25},
    },
}


def sandbox_pace() -> dict[str, dict[str, float]]:
    """The pace ``$PROMO_STANDIN_PACE`` names (``demo`` when unset)."""
    name = os.environ.get(PACE_VARIABLE) or "demo"
    if name not in PACES:
        raise InputError(f"${PACE_VARIABLE} is {name!r}", f"set it to one of {', '.join(PACES)}, or unset it")
    return PACES[name]


@dataclass(frozen=True)
class Knobs:
    """What the knob files say now: versions that come up Degraded, and versions whose sync fails (phase, message)."""

    degraded: frozenset[str] = frozenset()
    failing: dict[str, tuple[str, str]] = field(default_factory=dict)

    @classmethod
    def read(cls, settings: StandinSettings) -> Knobs:
        failing: dict[str, tuple[str, str]] = {}
        for line in _lines(settings.failed_syncs):
            version, _, rest = line.partition(" ")
            phase, _, message = rest.strip().partition(" ")
            if phase not in FAILED_PHASES:  # no phase given: Failed, and the whole rest is the message
                phase, message = "Failed", rest.strip()
            failing[version] = (phase, message.strip() or "one or more tasks failed")
        return cls(frozenset(_lines(settings.degraded_versions)), failing)


def _lines(path: Path | None) -> list[str]:
    """A knob file's lines without blanks and ``#`` comments, re-read each time: tests and demos turn knobs live."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines() if path is not None else []
    except FileNotFoundError:
        lines = []
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


@dataclass(frozen=True)
class Manifest:
    """What the stand-in reads from one Application manifest."""

    name: str
    namespace: str
    spec: dict[str, Any]
    chart_index: int  # the chart source's position in spec.sources (0 for spec.source)
    chart_version: str  # "" while nothing is to be deployed
    chart_revision: str  # what Argo CD reports: the chart version, or for a native OCI source its manifest digest
    comparison_error: str | None = None  # why the chart revision could not be resolved

    @property
    def multi_source(self) -> bool:
        return "sources" in self.spec

    @property
    def sources(self) -> list[dict[str, Any]]:
        return list(self.spec["sources"]) if self.multi_source else [self.spec["source"]]


@dataclass(frozen=True)
class Operation:
    revisions: tuple[str, ...]
    started_at: float
    finishes_at: float
    failure: tuple[str, str] | None = None  # (Failed or Error, message) when the knob makes this sync fail


@dataclass
class Application:
    manifest: Manifest
    desired: tuple[str, ...]  # per source, as compared at reconciled_at
    reconciled_at: float
    timing: StandinSettings = field(repr=False)
    health: str = "Missing"
    health_since: float = 0.0
    out_of_sync_since: float | None = None
    operation: Operation | None = None
    last_operation: Operation | None = None
    deployed: tuple[str, ...] | None = None
    progressing_until: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)  # chart revision -> chart version (a digest's version)

    def __post_init__(self) -> None:
        self.health_since = self.reconciled_at
        self.versions[self.manifest.chart_revision] = self.manifest.chart_version
        self._await_sync(self.reconciled_at)

    @property
    def chart_index(self) -> int:
        return self.manifest.chart_index

    @property
    def deployed_version(self) -> str:
        revision = self.deployed[self.chart_index] if self.deployed else ""
        return self.versions.get(revision, revision)

    @property
    def synced(self) -> bool:
        return self.deployed is not None and self.deployed[self.chart_index] == self.desired[self.chart_index]

    def reconcile(self, manifest: Manifest, desired: tuple[str, ...], now: float) -> None:
        """Compare with what git says now (Argo CD's refresh)."""
        self.manifest, self.desired, self.reconciled_at = manifest, desired, now
        self.versions[manifest.chart_revision] = manifest.chart_version
        self._await_sync(now)

    def advance(self, now: float, knobs: Knobs) -> None:
        """Apply, in time order, every step due by ``now``; then let the knob turn a running version bad or good."""
        while (step := self._next_step(knobs)) is not None and step[0] <= now:
            at, apply = step
            apply(at)
            self.reconciled_at = max(self.reconciled_at, at)  # Argo CD refreshes after each operation
        if self.deployed and self.progressing_until is None:
            self._set_health("Degraded" if self.deployed_version in knobs.degraded else "Healthy", now)

    def _next_step(self, knobs: Knobs) -> tuple[float, Callable[[float], None]] | None:
        steps: list[tuple[float, Callable[[float], None]]] = []
        if self.operation is not None:
            steps.append((self.operation.finishes_at, self._finish_operation))
        elif self.out_of_sync_since is not None:
            steps.append((self.out_of_sync_since + self.timing.sync_delay, lambda at: self._start_operation(at, knobs)))
        if self.progressing_until is not None:
            steps.append((self.progressing_until, lambda at: self._finish_progressing(at, knobs)))
        return min(steps, key=lambda step: step[0]) if steps else None

    def _await_sync(self, now: float) -> None:
        """Automated sync: a chart revision to deploy that is not deployed is synced after ``sync_delay``, unless
        its last sync failed (Argo CD's automated sync does not try a revision whose last attempt failed again)."""
        wanted = self.desired[self.chart_index]
        last = self.last_operation
        tried = last is not None and last.failure is not None and last.revisions == self.desired
        if not wanted or self.synced or tried:
            self.out_of_sync_since = None
        elif self.out_of_sync_since is None:
            self.out_of_sync_since = now

    def _start_operation(self, at: float, knobs: Knobs) -> None:
        self.out_of_sync_since = None
        failure = knobs.failing.get(self.versions.get(self.desired[self.chart_index], ""))
        self.operation = Operation(self.desired, at, at + self.timing.operation_seconds, failure)
        log.info("%s: sync to %s started", self.manifest.name, self.desired[self.chart_index])

    def _finish_operation(self, at: float) -> None:
        assert self.operation is not None
        finished = self.operation
        self.operation, self.last_operation = None, finished
        if finished.failure is not None:  # nothing was deployed: what ran before runs on
            log.info("%s: sync to %s %s", self.manifest.name, finished.revisions[self.chart_index], finished.failure[0])
            self._await_sync(at)
            return
        self.deployed = finished.revisions
        self.history = [*self.history, self._history_entry(finished, at)][-HISTORY_LIMIT:]
        self.progressing_until = at + self.timing.progressing_seconds
        self._set_health("Progressing", at)
        self._await_sync(at)

    def _finish_progressing(self, at: float, knobs: Knobs) -> None:
        self.progressing_until = None
        self._set_health("Degraded" if self.deployed_version in knobs.degraded else "Healthy", at)

    def _set_health(self, health: str, at: float) -> None:
        if health != self.health:
            log.info("%s: %s at %s", self.manifest.name, health, self.deployed_version)
            self.health, self.health_since = health, at

    def _history_entry(self, operation: Operation, deployed_at: float) -> dict[str, Any]:
        ids = [entry["id"] for entry in self.history]
        return {
            "id": max(ids, default=-1) + 1,
            **self._revisions(operation.revisions),
            **self._sources(),
            "deployStartedAt": timestamp(operation.started_at),
            "deployedAt": timestamp(deployed_at),
        }

    # -- Argo CD's JSON ---------------------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        manifest = self.manifest
        status: dict[str, Any] = {
            "sync": {
                "status": "Unknown" if manifest.comparison_error else "Synced" if self.synced else "OutOfSync",
                "comparedTo": {**self._sources(), "destination": manifest.spec.get("destination", {})},
                **self._revisions(self.desired),
            },
            "health": {"status": self.health, "lastTransitionTime": timestamp(self.health_since)},
            "reconciledAt": timestamp(self.reconciled_at),
            "history": self.history,
            "sourceType": "Helm",
        }
        if manifest.comparison_error:
            status["conditions"] = [{"type": "ComparisonError", "message": manifest.comparison_error}]
        shown = self.operation or self.last_operation
        if shown is not None:
            status["operationState"] = self._operation_state(shown, running=shown is self.operation)
        body: dict[str, Any] = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": manifest.name, "namespace": manifest.namespace},
            "spec": manifest.spec,
            "status": status,
        }
        if self.operation is not None:
            body["operation"] = self._operation(self.operation)
        return body

    def _operation(self, operation: Operation) -> dict[str, Any]:
        return {"sync": self._revisions(operation.revisions), "initiatedBy": {"automated": True}, "retry": {}}

    def _operation_state(self, operation: Operation, *, running: bool) -> dict[str, Any]:
        phase, message = ("Succeeded", SYNC_DONE_MESSAGE) if operation.failure is None else operation.failure
        state: dict[str, Any] = {
            "operation": self._operation(operation),
            "phase": "Running" if running else phase,
            "message": SYNC_RUNNING_MESSAGE if running else message,
            "startedAt": timestamp(operation.started_at),
        }
        if not running:
            state["finishedAt"] = timestamp(operation.finishes_at)
            if phase != "Error":  # an Error is a sync the controller could not carry out: it has no result
                state["syncResult"] = {**self._revisions(operation.revisions), **self._sources(), "resources": []}
        return state

    def _revisions(self, revisions: tuple[str, ...]) -> dict[str, Any]:
        """``revision`` for one source, ``revisions`` (in spec.sources order) for several, as Argo CD writes them."""
        return {"revisions": list(revisions)} if self.manifest.multi_source else {"revision": revisions[0]}

    def _sources(self) -> dict[str, Any]:
        manifest = self.manifest
        return {"sources": manifest.sources} if manifest.multi_source else {"source": manifest.sources[0]}


def timestamp(seconds: float) -> str:
    """RFC 3339 in whole seconds, as Kubernetes writes ``metav1.Time``."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
