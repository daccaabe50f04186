"""A stand-in for Argo CD and the clusters, for the sandbox only: it is not Argo CD and deploys nothing.

The sandbox has no Kubernetes and no Argo CD, yet promo's verification reads both: Argo CD's view of each
Application, and a version endpoint each deployment serves. This small HTTP server plays both parts by following the
GitOps repository the way Argo CD's automated sync would:

- every ``poll_seconds`` (and at once on ``?refresh=``) it reads ``<root>/<env>/<cluster>/<app>.yaml`` on the branch
  of the bare GitOps repository, straight from disk;
- an Application whose chart ``targetRevision`` differs from what it runs is OutOfSync; ``sync_delay`` later a sync
  operation starts, runs for ``operation_seconds``, and the Application is then Synced and Progressing for
  ``progressing_seconds``, then Healthy, or Degraded when its version is listed in the ``degraded_versions`` file
  (re-read at every poll, so a running version can also go bad, or recover, later);
- ``GET /api/v1/applications/{name}`` answers with Argo CD's own field names and shapes (the fields promo reads), and
  ``GET /clusters/{env}/{cluster}/{app}/version`` answers with the chart version that cluster serves while Healthy
  (what the sample app's ``CHART_VERSION`` would say), 503 otherwise.

Time stamps have whole seconds, as Argo CD's do. A git source's revision is the GitOps commit read (the only git
repository the stand-in knows). Run it as ``python -m promo.local.standin CONFIG.json``; ``promo sandbox`` does so.
"""

from __future__ import annotations

import hmac
import json
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from promo.errors import PromoError, ToolError
from promo.local.processes import START_TIMEOUT, LocalServer, free_port
from promo.gitops.manifests import DEFAULT_ROOT, read_target_revision

log = logging.getLogger("promo.local.standin")

HISTORY_LIMIT = 10  # Argo CD's default revisionHistoryLimit
SYNC_RUNNING_MESSAGE = "one or more tasks are running"
SYNC_DONE_MESSAGE = "successfully synced (all tasks run)"
STOP_GRACE_SECONDS = 2.0  # within LocalServer's STOP_TIMEOUT, after which it would SIGKILL


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
    token_file: Path | None = Field(default=None, description="the API then demands this bearer token")


# -- one Application's life, driven by times handed in (so it never reads the clock itself) ------------------------


@dataclass(frozen=True)
class Manifest:
    """What the stand-in reads from one Application manifest."""

    name: str
    namespace: str
    spec: dict[str, Any]
    chart_index: int  # the chart source's position in spec.sources (0 for spec.source)
    chart_version: str  # "" while nothing is to be deployed

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

    def __post_init__(self) -> None:
        self.health_since = self.reconciled_at
        self._await_sync(self.reconciled_at)

    @property
    def chart_index(self) -> int:
        return self.manifest.chart_index

    @property
    def deployed_version(self) -> str:
        return self.deployed[self.chart_index] if self.deployed else ""

    @property
    def synced(self) -> bool:
        return self.deployed is not None and self.deployed_version == self.desired[self.chart_index]

    def reconcile(self, manifest: Manifest, desired: tuple[str, ...], now: float) -> None:
        """Compare with what git says now (Argo CD's refresh)."""
        self.manifest, self.desired, self.reconciled_at = manifest, desired, now
        self._await_sync(now)

    def advance(self, now: float, degraded: frozenset[str]) -> None:
        """Apply, in time order, every step due by ``now``; then let the knob turn a running version bad or good."""
        while (step := self._next_step(degraded)) is not None and step[0] <= now:
            at, apply = step
            apply(at)
            self.reconciled_at = max(self.reconciled_at, at)  # Argo CD refreshes after each operation
        if self.deployed and self.progressing_until is None:
            self._set_health("Degraded" if self.deployed_version in degraded else "Healthy", now)

    def _next_step(self, degraded: frozenset[str]) -> tuple[float, Callable[[float], None]] | None:
        steps: list[tuple[float, Callable[[float], None]]] = []
        if self.operation is not None:
            steps.append((self.operation.finishes_at, self._finish_operation))
        elif self.out_of_sync_since is not None:
            steps.append((self.out_of_sync_since + self.timing.sync_delay, self._start_operation))
        if self.progressing_until is not None:
            steps.append((self.progressing_until, lambda at: self._finish_progressing(at, degraded)))
        return min(steps, key=lambda step: step[0]) if steps else None

    def _await_sync(self, now: float) -> None:
        """Automated sync: a chart version to deploy that is not deployed is synced after ``sync_delay``."""
        wanted = self.desired[self.chart_index]
        if not wanted or self.synced:
            self.out_of_sync_since = None
        elif self.out_of_sync_since is None:
            self.out_of_sync_since = now

    def _start_operation(self, at: float) -> None:
        self.out_of_sync_since = None
        self.operation = Operation(self.desired, at, at + self.timing.operation_seconds)
        log.info("%s: sync to %s started", self.manifest.name, self.desired[self.chart_index])

    def _finish_operation(self, at: float) -> None:
        assert self.operation is not None
        finished = self.operation
        self.operation, self.last_operation, self.deployed = None, finished, finished.revisions
        self.history = [*self.history, self._history_entry(finished, at)][-HISTORY_LIMIT:]
        self.progressing_until = at + self.timing.progressing_seconds
        self._set_health("Progressing", at)
        self._await_sync(at)

    def _finish_progressing(self, at: float, degraded: frozenset[str]) -> None:
        self.progressing_until = None
        self._set_health("Degraded" if self.deployed_version in degraded else "Healthy", at)

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
            "deployStartedAt": _timestamp(operation.started_at),
            "deployedAt": _timestamp(deployed_at),
        }

    # -- Argo CD's JSON ---------------------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        manifest = self.manifest
        status: dict[str, Any] = {
            "sync": {
                "status": "Synced" if self.synced else "OutOfSync",
                "comparedTo": {**self._sources(), "destination": manifest.spec.get("destination", {})},
                **self._revisions(self.desired),
            },
            "health": {"status": self.health, "lastTransitionTime": _timestamp(self.health_since)},
            "reconciledAt": _timestamp(self.reconciled_at),
            "history": self.history,
            "sourceType": "Helm",
        }
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
        state: dict[str, Any] = {
            "operation": self._operation(operation),
            "phase": "Running" if running else "Succeeded",
            "message": SYNC_RUNNING_MESSAGE if running else SYNC_DONE_MESSAGE,
            "startedAt": _timestamp(operation.started_at),
        }
        if not running:
            state["finishedAt"] = _timestamp(operation.finishes_at)
            state["syncResult"] = {**self._revisions(operation.revisions), **self._sources(), "resources": []}
        return state

    def _revisions(self, revisions: tuple[str, ...]) -> dict[str, Any]:
        """``revision`` for one source, ``revisions`` (in spec.sources order) for several, as Argo CD writes them."""
        return {"revisions": list(revisions)} if self.manifest.multi_source else {"revision": revisions[0]}

    def _sources(self) -> dict[str, Any]:
        manifest = self.manifest
        return {"sources": manifest.sources} if manifest.multi_source else {"source": manifest.sources[0]}


# -- the world: what git says, and every Application ----------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    env: str
    cluster: str
    app: str


class World:
    """Every Application in the GitOps repository, advanced under one lock by the poller and by requests."""

    def __init__(self, settings: StandinSettings) -> None:
        self.settings = settings
        self.lock = threading.Lock()
        self._head: str | None = None
        self._applications: dict[str, Application] = {}
        self._placements: dict[Placement, str] = {}

    def refresh(self) -> None:
        """A poll, or a ``?refresh=``: bring every Application up to now, compare with git, and move on from there."""
        now = self.advance()
        head = self._read_head()
        if head != self._head:
            self._reconcile(head, now)
        else:
            for application in self._applications.values():
                application.reconcile(application.manifest, application.desired, now)
        self.advance()

    def advance(self) -> float:
        """Apply what time alone brings (a sync starting or ending, health settling, the knob); git is not read."""
        now, degraded = time.time(), self._degraded_versions()
        for application in self._applications.values():
            application.advance(now, degraded)
        return now

    def application(self, name: str) -> Application | None:
        return self._applications.get(name)

    def placed(self, placement: Placement) -> Application | None:
        name = self._placements.get(placement)
        return self._applications.get(name) if name is not None else None

    def _read_head(self) -> str | None:
        """The branch's commit; None while there is none (the sandbox may create the repository after us)."""
        branch = f"refs/heads/{self.settings.branch}^{{commit}}"
        return self._git("rev-parse", "--verify", "--quiet", branch, check=False).decode().strip() or None

    def _reconcile(self, head: str | None, now: float) -> None:
        self._head = head
        manifests = self._read_manifests(head) if head is not None else {}
        for name in set(self._applications) - {manifest.name for manifest in manifests.values()}:
            log.info("%s: its manifest is gone", name)
            del self._applications[name]
        self._placements = {placement: manifest.name for placement, manifest in manifests.items()}
        for manifest in manifests.values():
            desired = tuple(
                manifest.chart_version if index == manifest.chart_index else head
                for index in range(len(manifest.sources))
            )
            existing = self._applications.get(manifest.name)
            if existing is None:
                self._applications[manifest.name] = Application(manifest, desired, now, self.settings)
            else:
                existing.reconcile(manifest, desired, now)

    def _read_manifests(self, head: str) -> dict[Placement, Manifest]:
        """Every ``<root>/<env>/<cluster>/<app>.yaml`` at ``head``; an unreadable one is logged and left out."""
        root = self.settings.root.strip("/")
        listing = self._git("ls-tree", "-r", "-z", head, "--", f"{root}/").decode("utf-8", errors="replace")
        blobs: dict[str, Placement] = {}
        for entry in filter(None, listing.split("\0")):
            details, path = entry.split("\t", 1)
            parts = path.removeprefix(f"{root}/").split("/")
            if details.split()[1] == "blob" and len(parts) == 3 and parts[2].endswith(".yaml"):
                blobs[path] = Placement(parts[0], parts[1], parts[2].removesuffix(".yaml"))
        found: dict[Placement, Manifest] = {}
        for (path, placement), data in zip(blobs.items(), self._read_blobs(head, list(blobs)), strict=True):
            try:
                found[placement] = self._manifest(placement, data.decode("utf-8"))
            except (PromoError, YAMLError, UnicodeDecodeError, KeyError, TypeError) as error:
                log.warning("%s: skipped, unreadable: %s", path, error)  # Argo CD would show a ComparisonError
        return found

    def _read_blobs(self, head: str, paths: list[str]) -> list[bytes]:
        """The contents of ``paths`` at ``head``, read by one ``git cat-file --batch``."""
        output = self._git("cat-file", "--batch", input="".join(f"{head}:{path}\n" for path in paths).encode())
        contents: list[bytes] = []
        while output:
            header, _, output = output.partition(b"\n")
            size = int(header.split()[2])
            contents.append(output[:size])
            output = output[size + 1 :]
        return contents

    def _git(self, *args: str, input: bytes | None = None, check: bool = True) -> bytes:
        """git on the bare repository: one short process per call, reaped before it returns, so none outlives us."""
        result = subprocess.run(
            ["git", f"--git-dir={self.settings.gitops}", *args], input=input, capture_output=True,
            stdin=None if input is not None else subprocess.DEVNULL,
        )  # fmt: skip
        if check and result.returncode != 0:
            last = (result.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
            raise ToolError(f"`git {' '.join(args)}` failed in {self.settings.gitops}: {last}", "check the repository")
        return result.stdout

    def _manifest(self, placement: Placement, text: str) -> Manifest:
        chart_version = read_target_revision(text, placement.app)
        document = YAML(typ="safe").load(text)
        spec = document["spec"]
        sources = spec.get("sources") or [spec["source"]]
        chart_index = next(index for index, source in enumerate(sources) if "chart" in source)
        name = self.settings.application.format(app=placement.app, env=placement.env, cluster=placement.cluster)
        namespace = (document.get("metadata") or {}).get("namespace") or self.settings.namespace
        return Manifest(name, namespace, spec, chart_index, chart_version)

    def _degraded_versions(self) -> frozenset[str]:
        path = self.settings.degraded_versions
        try:
            lines = path.read_text(encoding="utf-8").splitlines() if path is not None else []
        except FileNotFoundError:
            lines = []
        return frozenset(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))


# -- HTTP ------------------------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    world: World  # set on the subclass serve() makes
    token: str | None

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        url = urlsplit(self.path)
        parts = [unquote(part) for part in url.path.strip("/").split("/")]
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        if parts == ["healthz"]:
            self._send(HTTPStatus.OK, "ok")
        elif parts[:3] == ["api", "v1", "applications"] and len(parts) == 4:
            self._get_application(parts[3], query)
        elif len(parts) == 5 and parts[0] == "clusters" and parts[4] == "version":
            self._get_version(Placement(parts[1], parts[2], parts[3]))
        else:
            self._send_error(HTTPStatus.NOT_FOUND, 5, f"no route for {url.path}")

    def _get_application(self, name: str, query: dict[str, str]) -> None:
        if not self._authorized():
            self._send_error(HTTPStatus.UNAUTHORIZED, 16, "no session information")
            return
        with self.world.lock:
            try:
                if query.get("refresh") in ("normal", "hard"):
                    self.world.refresh()
                else:
                    self.world.advance()  # like Argo CD, answer from the last comparison
            except PromoError as error:
                self._send_error(HTTPStatus.INTERNAL_SERVER_ERROR, 13, str(error))
                return
            application = self.world.application(name)
            wanted_namespace = query.get("appNamespace")
            if application is None or wanted_namespace not in (None, "", application.manifest.namespace):
                body = None
            else:
                body = application.to_json()
        if body is None:
            self._send_error(HTTPStatus.NOT_FOUND, 5, f'applications.argoproj.io "{name}" not found')
        else:
            self._send(HTTPStatus.OK, json.dumps(body), "application/json")

    def _get_version(self, placement: Placement) -> None:
        with self.world.lock:
            self.world.advance()
            application = self.world.placed(placement)
            health, version = (application.health, application.deployed_version) if application else ("", "")
        where = f"{placement.app} in {placement.env}/{placement.cluster}"
        if application is None:
            self._send(HTTPStatus.NOT_FOUND, f"no Application for {where}\n")
        elif health != "Healthy":
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, f"{where} is not serving ({health})\n")
        else:
            self._send(HTTPStatus.OK, version)  # the bare version, as the sample app's CHART_VERSION

    def _authorized(self) -> bool:
        if self.token is None:
            return True
        given = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(given.encode(), self.token.encode())

    def _send_error(self, status: HTTPStatus, code: int, message: str) -> None:
        """Argo CD's (gRPC gateway's) error shape."""
        self._send(status, json.dumps({"error": message, "code": code, "message": message}), "application/json")

    def _send(self, status: HTTPStatus, body: str, content_type: str = "text/plain; charset=utf-8") -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        """No access log: verification polls several times a second."""


def serve(settings: StandinSettings) -> None:
    """Follow the GitOps repository and answer HTTP on 127.0.0.1 until the process is stopped."""
    world = World(settings)
    with world.lock:
        world.refresh()
    token = settings.token_file.read_text(encoding="utf-8").strip() if settings.token_file is not None else None
    handler = type("Handler", (_Handler,), {"world": world, "token": token})
    server = ThreadingHTTPServer(("127.0.0.1", settings.port), handler)
    threading.Thread(target=_poll, args=(world,), name="poll", daemon=True).start()
    log.info("following %s (%s) on http://127.0.0.1:%d", settings.gitops, settings.branch, settings.port)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        server.serve_forever()
    finally:
        # Every git call runs under the lock: holding it, no git process is left running when this process ends.
        world.lock.acquire(timeout=STOP_GRACE_SECONDS)
        log.info("stopped")


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _poll(world: World) -> None:
    while True:
        time.sleep(world.settings.poll_seconds)  # a poll interval, not a wait for anything
        with world.lock:
            try:
                world.refresh()
            except Exception:  # a bad moment in git must not end the polling; the log says what happened
                log.exception("poll failed")


def _timestamp(seconds: float) -> str:
    """RFC 3339 in whole seconds, as Kubernetes writes ``metav1.Time``."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the process ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StandinServer(LocalServer):
    """The stand-in running as a detached ``python -m promo.local.standin`` process, with its files under ``root``."""

    program = "promo stand-in"
    config_name = "config.json"
    log_name = "standin.log"
    ready_path = "/healthz"

    @classmethod
    def start(cls, root: Path, settings: StandinSettings) -> StandinServer:
        """Start it with ``settings`` (``port`` 0: a free one) and return once it answers."""
        root = root.resolve()
        root.mkdir(parents=True, exist_ok=True)
        settings = settings.model_copy(update={"port": settings.port or free_port()})
        config_path = root / cls.config_name
        config_path.write_text(settings.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return cls._spawn(root, settings.port, [sys.executable, "-m", __name__, str(config_path)])

    def _runs_program(self, argv: list[bytes]) -> bool:
        return argv[1:3] == [b"-m", __name__.encode()]

    def refresh(self) -> None:
        """Read git now rather than at the next poll (as ``?refresh=normal`` does, whatever the name asked for):
        the sandbox calls this once it has created the GitOps remote the stand-in follows."""
        httpx.get(f"{self.url}/api/v1/applications/refresh?refresh=normal", timeout=START_TIMEOUT)


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)
    if len(argv) != 1:
        sys.exit("usage: python -m promo.local.standin CONFIG.json")
    serve(StandinSettings.model_validate_json(Path(argv[0]).read_text(encoding="utf-8")))


if __name__ == "__main__":
    main(sys.argv[1:])
