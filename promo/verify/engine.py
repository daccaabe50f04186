"""Watch one deployment until it is verified, fails for good, or runs out of time, and say so as a Verdict.

Every round looks at every cluster: Argo CD first (synced at the version, sync finished, healthy), then the app's
own version URL once Argo CD is content (before that, the URL may not exist yet, and old pods answer anyway). A
cluster counts when it has stayed healthy for ``healthy_for`` seconds without a single bad look in between; a
``Degraded`` Application, a sync of the written revision that ended ``Failed`` or ``Error``, or a 4xx from the app
fails the whole verification at once. A fault reaching Argo CD is looked at again next round, and so is an
Application Argo CD does not have (yet: an app-of-apps or an ApplicationSet creates it from the GitOps commit too).
If every cluster still waiting at the timeout was never seen, no verdict is reached: an Argo CD outage raises
TransientError, an Application that never appeared NotFound. Neither says anything about the deployment.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import httpx

from promo.config import PromoConfig, VerifySettings
from promo.errors import InputError, NotFound, TransientError
from promo.gitops.verdicts import Verdict
from promo.verify.argocd import ArgoCD, assess, chart_source
from promo.verify.http import check_version, new_client, version_url
from promo.verify.observation import Observation, State


@dataclass
class _Cluster:
    name: str
    application: str | None  # the Argo CD Application, when Argo CD is checked
    url: str | None  # the version URL, when the app is checked
    refreshed: bool = False  # Argo CD was asked to refresh this Application once
    healthy_since: float | None = None
    last: Observation = Observation.pending("not looked at yet")
    unseen: TransientError | NotFound | None = None  # why the last look could not read the Application


def verify_deployment(
    config: PromoConfig,
    env: str,
    version: str,
    gitops_commit: str,
    *,
    flow_run: str | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    argocd: ArgoCD | None = None,
    http: httpx.Client | None = None,
    chart_digest: str | None = None,
    pushed_digest: Callable[[], str] | None = None,
) -> Verdict:
    """Whether ``version`` came up in ``env`` after ``gitops_commit``; a failed verification is a verdict, not an
    error. Misconfiguration (AuthError, ConfigError, NotFound: an Application that never appeared, a chart not in its
    repository) raises, and so does Argo CD unreachable to the end (TransientError): they say nothing about the
    deployment.

    The caller hands the clients in (promo.tasks.verify builds them from promo.yaml): ``argocd`` where the
    environment checks Argo CD, and the chart's digest for an Application with a native OCI source, which reports the
    manifest digest of the chart pushed as ``version`` instead of the version: ``chart_digest``, or
    ``pushed_digest`` to read it from the chart repository if it turns out to be needed."""
    settings = config.environment(env).verify
    if settings is None:
        raise InputError(f"{env} has no verify settings", f"add verify: to environment {env} in promo.yaml")
    if settings.argocd is not None and argocd is None:
        raise InputError(f"verifying {env} needs its Argo CD client", "hand one in (promo.tasks.verify builds it)")
    with ExitStack() as stack:
        if settings.http is not None and http is None:
            http = stack.enter_context(new_client())
        argocd = argocd if settings.argocd else None
        watch = _Watch(config, env, version, settings, argocd, http, clock, sleep, chart_digest, pushed_digest)
        verified, reason = watch.run()
    checks = tuple(name for name, check in (("argocd", settings.argocd), ("http", settings.http)) if check)
    return Verdict(
        app=config.app,
        env=env,
        version=version,
        gitops_commit=gitops_commit,
        verified=verified,
        reason=reason,
        checked_at=datetime.now(timezone.utc).replace(microsecond=0),  # as the record keeps it
        checks=checks,
        flow_run=flow_run,
    )


class _Watch:
    """One verification: its clusters, what was last seen on each, and since when each has been healthy."""

    def __init__(
        self,
        config: PromoConfig,
        env: str,
        version: str,
        settings: VerifySettings,
        argocd: ArgoCD | None,
        http: httpx.Client | None,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        chart_digest: str | None,
        pushed_digest: Callable[[], str] | None,
    ) -> None:
        self.config = config
        self.version = version
        self.settings = settings
        self.chart_digest = chart_digest  # else read when first needed (see _digest_for)
        self.pushed_digest = pushed_digest
        self.argocd = argocd
        self.http = http
        self.clock = clock
        self.sleep = sleep
        self.what = f"{config.app} {version} in {env}"
        self.clusters = [
            _Cluster(
                cluster,
                argocd.application_name(config.app, env, cluster) if argocd else None,
                version_url(settings.http.url, config.app, env, cluster) if settings.http else None,
            )
            for cluster in config.environment(env).clusters
        ]

    def run(self) -> tuple[bool, str]:
        """(verified, reason)."""
        deadline = self.clock() + self.settings.timeout
        while True:
            looked_at = self.clock()
            for cluster in self.clusters:
                cluster.last = self._look(cluster)
                if cluster.last.state is State.FAILED:
                    return False, f"cluster {cluster.name}: {cluster.last.reason}"
                if cluster.last.state is not State.HEALTHY:
                    cluster.healthy_since = None  # a drop starts healthy_for again
                elif cluster.healthy_since is None:
                    cluster.healthy_since = looked_at
            now = self.clock()
            if all(self._held(cluster, now) for cluster in self.clusters):
                return True, self._summary()
            if now >= deadline:
                return False, self._timed_out(now)
            self.sleep(min(self.settings.poll_interval_seconds, deadline - now))

    def _look(self, cluster: _Cluster) -> Observation:
        cluster.unseen = None
        seen: list[Observation] = []
        if self.argocd is not None and cluster.application is not None:  # Argo CD first: see the module's doc
            try:
                application = self.argocd.application(cluster.application, refresh=not cluster.refreshed)
            except TransientError as error:
                cluster.unseen = error
                return Observation.pending(error.cause)
            except NotFound as error:
                cluster.unseen = error
                return Observation.pending(
                    f"Application {cluster.application} does not exist yet: waiting for it to be created (by an "
                    "app-of-apps or ApplicationSet)"
                )
            cluster.refreshed = True
            seen.append(assess(application, self.version, self._digest_for(application)))
            if seen[-1].state is not State.HEALTHY:
                return seen[-1]
        if self.http is not None and cluster.url is not None:
            seen.append(check_version(self.http, cluster.url, self.version))
            if seen[-1].state is not State.HEALTHY:
                return seen[-1]
        return Observation.healthy("; ".join(observation.reason for observation in seen))

    def _digest_for(self, application: Mapping[str, Any]) -> str | None:
        """The pushed chart's digest, for an Application whose chart source is native OCI (read once, then kept)."""
        if not chart_source(application).native_oci:
            return None
        if self.chart_digest is None:
            if self.pushed_digest is None:
                raise InputError(
                    f"verifying {self.what} needs the pushed chart's digest (its Argo CD source is native OCI)",
                    "hand in chart_digest or pushed_digest (promo.tasks.verify does)",
                )
            self.chart_digest = self.pushed_digest()
        return self.chart_digest

    def _held(self, cluster: _Cluster, now: float) -> bool:
        return cluster.healthy_since is not None and now - cluster.healthy_since >= self.settings.healthy_for

    def _summary(self) -> str:
        looks = "; ".join(f"cluster {cluster.name}: {cluster.last.reason}" for cluster in self.clusters)
        return f"{looks} (held {self.settings.healthy_for} s)"

    def _timed_out(self, now: float) -> str:
        waiting = [cluster for cluster in self.clusters if not self._held(cluster, now)]
        within = f"within {_duration(self.settings.timeout)}"
        reasons = "; ".join(f"cluster {cluster.name}: {self._state_of(cluster, now)}" for cluster in waiting)
        if all(cluster.unseen is not None for cluster in waiting):  # nothing seen of the deployment itself
            if any(isinstance(cluster.unseen, TransientError) for cluster in waiting):
                raise TransientError(
                    f"could not verify {self.what}: Argo CD unreachable {within} ({reasons})",
                    "no verdict was recorded; check Argo CD and verify again",
                )
            missing = ", ".join(str(cluster.application) for cluster in waiting)
            raise NotFound(
                f"could not verify {self.what}: Argo CD has no Application {missing}, and none appeared {within}",
                f"no verdict was recorded; {waiting[0].unseen.fix}, or make the app-of-apps or ApplicationSet that "
                "should create it do so; then verify again",
            )
        return f"not healthy {within}: {reasons}"

    def _state_of(self, cluster: _Cluster, now: float) -> str:
        if cluster.healthy_since is None:
            return cluster.last.reason
        held = now - cluster.healthy_since
        return f"{cluster.last.reason}, but only for {held:.0f} s of {self.settings.healthy_for} s"


def _duration(seconds: int) -> str:
    return f"{seconds // 60} min" if seconds >= 60 and seconds % 60 == 0 else f"{seconds} s"
