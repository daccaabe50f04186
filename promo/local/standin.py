"""A stand-in for Argo CD and the clusters, for the sandbox only: it is not Argo CD and deploys nothing.

The sandbox has no Kubernetes and no Argo CD, yet promo's verification reads both: Argo CD's view of each
Application, and a version endpoint each deployment serves. This small HTTP server plays both parts by following the
GitOps repository the way Argo CD's automated sync would:

- every ``poll_seconds`` (and at once on ``?refresh=``) it reads ``<root>/<env>/<cluster>/<app>.yaml`` on the branch
  of the bare GitOps repository, straight from disk;
- an Application whose chart ``targetRevision`` differs from what it runs is OutOfSync; ``sync_delay`` later a sync
  operation starts, runs for ``operation_seconds``, and the Application is then Synced and Progressing for
  ``progressing_seconds``, then Healthy, or Degraded when its version is listed in the ``degraded_versions`` file
  (re-read at every poll, so a running version can also go bad, or recover, later); a version listed in the
  ``failed_syncs`` file ends its sync ``Failed`` or ``Error`` with the message given there, and deploys nothing;
- a manifest new in git becomes an Application ``create_delay`` later (404 until then), as when an app-of-apps or an
  ApplicationSet creates it; an answer to ``?refresh=`` takes ``refresh_seconds`` (the refresh itself is at once);
- a native OCI source (``repoURL: oci://host/repository``, no ``chart:``) is resolved as Argo CD 3.1+ does: its tag
  ``targetRevision`` to the manifest digest the registry holds, which is then the revision reported;
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
from dataclasses import dataclass, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from promo.errors import PromoError, ToolError
from promo.gitops.manifests import read_target_revision
from promo.local.processes import START_TIMEOUT, ModuleServer, exit_on_sigterm, module_main
from promo.local.standin_apps import Application, Knobs, Manifest, StandinSettings
from promo.registry.helm import chart_tag
from promo.registry.oci import Registry
from promo.verify.argocd import OCI_SCHEME, is_native_oci

log = logging.getLogger("promo.local.standin")

STOP_GRACE_SECONDS = 2.0  # within LocalServer's STOP_TIMEOUT, after which it would SIGKILL


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
        self._unborn: dict[str, tuple[Manifest, float]] = {}  # in git, not an Application yet: manifest, from when
        self._placements: dict[Placement, str] = {}

    def refresh(self) -> None:
        """A poll, or a ``?refresh=``: bring every Application up to now, compare with git, and move on from there."""
        now = self.advance()
        head = self._read_head()
        if head != self._head:
            self._reconcile(head, now)
        else:
            for application in self._applications.values():
                manifest = application.manifest
                if manifest.comparison_error:  # Argo CD resolves again at every refresh: the chart may be there now
                    manifest = self._resolve(manifest)
                application.reconcile(manifest, self._desired(manifest), now)
        self.advance()

    def advance(self) -> float:
        """Apply what time alone brings (a sync starting or ending, health settling, the knobs, an Application being
        created); git is not read."""
        now, knobs = time.time(), Knobs.read(self.settings)
        for name, (manifest, since) in list(self._unborn.items()):
            if since <= now:
                log.info("%s: created", name)
                del self._unborn[name]
                self._applications[name] = Application(manifest, self._desired(manifest), since, self.settings)
        for application in self._applications.values():
            application.advance(now, knobs)
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
        names = {manifest.name for manifest in manifests.values()}
        for name in set(self._applications) - names:
            log.info("%s: its manifest is gone", name)
            del self._applications[name]
        self._unborn = {name: unborn for name, unborn in self._unborn.items() if name in names}
        self._placements = {placement: manifest.name for placement, manifest in manifests.items()}
        for manifest in manifests.values():
            existing = self._applications.get(manifest.name)
            if existing is not None:
                existing.reconcile(manifest, self._desired(manifest), now)
            else:  # created create_delay after it was first seen in git
                since = self._unborn.get(manifest.name, (manifest, now + self.settings.create_delay))[1]
                self._unborn[manifest.name] = (manifest, since)

    def _desired(self, manifest: Manifest) -> tuple[str, ...]:
        """What each source is compared at: the chart source at its revision, git sources at the commit read."""
        return tuple(
            manifest.chart_revision if index == manifest.chart_index else self._head or ""
            for index in range(len(manifest.sources))
        )

    def _resolve(self, manifest: Manifest) -> Manifest:
        """A native OCI source's tag resolved, as Argo CD's repo-server does, to the manifest digest the registry
        holds (anonymously: the sandbox's registry is); one that cannot be is Argo CD's ComparisonError."""
        source = manifest.sources[manifest.chart_index]
        if not is_native_oci(source) or not manifest.chart_version:
            return replace(manifest, chart_revision=manifest.chart_version, comparison_error=None)
        host, _, repository = str(source["repoURL"]).removeprefix(OCI_SCHEME).partition("/")
        try:
            with Registry(host, timeout=10) as registry:
                digest = registry.manifest_digest(repository, chart_tag(manifest.chart_version))
        except PromoError as error:
            digest, problem = None, error.cause
        else:
            problem = f"{source['repoURL']}:{manifest.chart_version}: not found"
        if digest is None:
            log.warning("%s: %s", manifest.name, problem)
            reason = f"Failed to load target state: failed to resolve revision {manifest.chart_version}: {problem}"
            return replace(manifest, chart_revision="", comparison_error=reason)
        return replace(manifest, chart_revision=digest, comparison_error=None)

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
        chart_index = next(index for index, source in enumerate(sources) if "chart" in source or is_native_oci(source))
        name = self.settings.application.format(app=placement.app, env=placement.env, cluster=placement.cluster)
        namespace = (document.get("metadata") or {}).get("namespace") or self.settings.namespace
        return self._resolve(Manifest(name, namespace, spec, chart_index, chart_version, chart_version))


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
        if query.get("refresh") in ("normal", "hard"):
            with self.world.lock:
                try:
                    self.world.refresh()
                except PromoError as error:
                    self._send_error(HTTPStatus.INTERNAL_SERVER_ERROR, 13, str(error))
                    return
            time.sleep(self.world.settings.refresh_seconds)  # a slow answer, as a slow repo-server gives; not a wait
        with self.world.lock:
            self.world.advance()  # like Argo CD, answer from the last comparison
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
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    try:
        server.serve_forever()
    finally:
        # Every git call runs under the lock: holding it, no git process is left running when this process ends.
        world.lock.acquire(timeout=STOP_GRACE_SECONDS)
        log.info("stopped")


def _poll(world: World) -> None:
    while True:
        time.sleep(world.settings.poll_seconds)  # a poll interval, not a wait for anything
        with world.lock:
            try:
                world.refresh()
            except Exception:  # a bad moment in git must not end the polling; the log says what happened
                log.exception("poll failed")


# -- the process ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StandinServer(ModuleServer):
    """The stand-in running as a detached ``python -m promo.local.standin`` process, with its files under ``root``."""

    program = "promo stand-in"
    module = __name__
    config_name = "config.json"
    log_name = "standin.log"
    ready_path = "/healthz"

    def refresh(self) -> None:
        """Read git now rather than at the next poll (as ``?refresh=normal`` does, whatever the name asked for):
        the sandbox calls this once it has created the GitOps remote the stand-in follows."""
        httpx.get(f"{self.url}/api/v1/applications/refresh?refresh=normal", timeout=START_TIMEOUT)


def main(argv: list[str]) -> None:
    module_main(argv, "promo.local.standin", StandinSettings, serve)


if __name__ == "__main__":
    main(sys.argv[1:])
