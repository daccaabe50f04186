"""A faulty registry: promo's client and the task retry policy finish every operation with the exact artefact.

A seeded share of the exchanges between promo and a real ``docker-registry`` fails (503, 429 with Retry-After: 0,
connections reset after the registry did the work, truncated blobs and manifests). Publish-style (push an RC chart),
promote/release-style (find the RC, pull it by digest, re-tag and push the release, pull it back) and image pushes
(buildah) run through the real Prefect task wrappers of ``tasks/``, with their retry policy (5 retries, transient
faults only) and 10 ms between attempts. Afterwards everything is pulled again straight from the registry behind the
proxy and checked byte for byte against its digest.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prefect import flow

from promo.registry.charts import package_chart, read_chart
from promo.config import PromoConfig
from promo.errors import AuthError, TransientError
from promo.registry.helm import chart_tag, pull_chart
from promo.registry.oci import REQUEST_ATTEMPTS, Registry
from promo.local.registry import RegistryServer
from promo.release.candidate import ReleaseCandidate
from promo.versions import rc_version, short_sha
from promo.tasks.chart import check_registry_access, find_chart, push_rc_chart
from promo.tasks.image import build_image
from promo.tasks.release import prepare_release_chart, publish_release_chart
from tests.reliability.conftest import fast_task_retries
from tests.reliability.faulty_proxy import FaultyProxy

SEED = 20240611
FAULT_RATE = 0.20
OPERATIONS = 30  # 20 publishes of an RC chart and 10 promotions (find, pull by digest, re-tag, push, pull back)
IMAGES = 3  # buildah build + push through the proxy: ~1-2 s each
APP = "flaky"
SAMPLE = Path(__file__).resolve().parents[2] / "promo" / "sample-world" / "app"

FIGURES: dict[str, object] = {}  # printed at the end, for docs/reliability.md


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory):
    server = RegistryServer.start(tmp_path_factory.mktemp("faulty-upstream"))
    yield server
    server.stop()


def config_for(host: str, tmp: Path) -> PromoConfig:
    return PromoConfig.model_validate(
        {
            "app": APP,
            "app_repo": {"url": (tmp / "app.git").as_uri()},
            "gitops": {"url": (tmp / "gitops.git").as_uri()},
            "chart": {"path": "chart", "repository": f"{host}/charts"},
            "image": {"repository": f"{host}/{APP}", "builder": "buildah", "storage_root": tmp / "buildah"},
            "cache_dir": tmp / "cache",
        }
    )


def chart_dir(tmp: Path) -> Path:
    chart = tmp / "chart"
    (chart / "templates").mkdir(parents=True, exist_ok=True)
    (chart / "Chart.yaml").write_text(f"apiVersion: v2\nname: {APP}\nversion: 0.1.0\nappVersion: '0'\n")
    (chart / "values.yaml").write_text("replicas: 1\n# padding so the package is a few kB\n" + "#" * 4000 + "\n")
    (chart / "templates" / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    return chart


def fake_sha(i: int) -> str:
    return hashlib.sha1(f"op-{i}".encode()).hexdigest()


@dataclass
class Outcome:
    charts: dict[str, str] = field(default_factory=dict)  # tag -> manifest digest promo reported
    images: dict[str, str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


@flow(name="faulty-registry-operations")
def run_operations(config: PromoConfig, chart: str, source: str, operations: int, images: int) -> Outcome:
    """Each operation is what a flow does, through the same tasks; a failure after the retries is recorded."""
    outcome = Outcome()
    rcs: list[tuple[str, str]] = []
    for i in range(operations):
        try:
            if i % 3 == 2:  # promote/release the RC published just before
                rc, pushed_digest = rcs.pop()
                digest = find_chart(config, rc)
                assert digest == pushed_digest, f"find_chart returned {digest} for {rc}, pushed {pushed_digest}"
                release = prepare_release_chart(config, ReleaseCandidate.of(rc, "stage"), digest)
                pushed = publish_release_chart(config, release)
                outcome.charts[pushed.tag] = pushed.digest
            else:
                sha = fake_sha(i)
                package = package_chart(Path(chart), version=rc_version(f"1.{i}.0", sha), app_version=short_sha(sha))
                pushed = push_rc_chart(config, package)
                outcome.charts[pushed.tag] = pushed.digest
                rcs.append((package.version, pushed.digest))
        except Exception as error:  # noqa: BLE001 - every failure is reported by the test
            outcome.failures.append(f"operation {i}: {type(error).__name__}: {error}")
    for i in range(images):
        try:
            built = build_image(config, Path(source), tag=f"img{i}", created=1_700_000_000)
            outcome.images[built.tag] = built.digest
        except Exception as error:  # noqa: BLE001
            outcome.failures.append(f"image {i}: {type(error).__name__}: {error}")
    return outcome


@dataclass(frozen=True)
class FaultyRun:
    outcome: Outcome
    proxy: FaultyProxy
    upstream: RegistryServer


@pytest.fixture(scope="module")
def faulty_run(upstream, tmp_path_factory) -> FaultyRun:
    tmp = tmp_path_factory.mktemp("faulty-run")
    source = tmp / "source"
    shutil.copytree(SAMPLE, source, ignore=shutil.ignore_patterns("charts"))
    started = time.monotonic()
    with pytest.MonkeyPatch.context() as monkeypatch, FaultyProxy(upstream.host, rate=FAULT_RATE, seed=SEED) as proxy:
        fast_task_retries(monkeypatch)
        config = config_for(proxy.host, tmp)
        outcome = run_operations(config, str(chart_dir(tmp)), str(source), OPERATIONS, IMAGES)
    FIGURES.update(
        operations=OPERATIONS,
        images=IMAGES,
        requests=len(proxy.requests),
        faults=dict(proxy.counts),
        failed=len(outcome.failures),
        seconds=round(time.monotonic() - started, 1),
    )
    print(f"\nfaulty registry figures: {FIGURES}")
    return FaultyRun(outcome, proxy, upstream)


def test_every_kind_of_fault_was_injected(faulty_run):
    counts = faulty_run.proxy.counts
    assert all(counts[kind] > 0 for kind in ("503", "429", "reset", "truncated")), counts
    assert faulty_run.proxy.faults_injected >= 0.15 * len(faulty_run.proxy.requests), counts


def test_every_operation_completes_at_a_20_percent_fault_rate(faulty_run):
    failures = faulty_run.outcome.failures
    assert not failures, (
        f"PROMO BUG (retry budget): {len(failures)} of {OPERATIONS + IMAGES} operations failed after the task's "
        f"{push_rc_chart.retries} retries at a {FAULT_RATE:.0%} per-request fault rate. A task retry re-runs the whole "
        "operation (7-12 registry requests), so each attempt fails with p = 1-0.8^k and 6 attempts are not enough; "
        "promo.registry.oci.Registry._send should retry one idempotent request on RegistryUnavailable (honouring Retry-After) "
        "before the task gives up:\n" + "\n".join(failures)
    )


def test_no_tag_points_at_a_partial_or_different_artefact(faulty_run):
    """Straight from the registry, no proxy: every tag is exactly what promo said it pushed, and nothing else."""
    outcome = faulty_run.outcome
    assert len(outcome.charts) + len(outcome.failures) >= OPERATIONS and outcome.images
    with Registry(faulty_run.upstream.host) as registry:
        repository = f"charts/{APP}"
        stored = registry.tags(repository)
        assert set(outcome.charts) <= set(stored), "a tag promo reported as pushed is missing"
        for tag in stored:
            digest = registry.manifest_digest(repository, tag)
            assert outcome.charts.get(tag, digest) == digest, f"{tag} points at another manifest than promo pushed"
            manifest = registry.pull_manifest(repository, digest)  # verified against the digest
            for blob in [manifest.json()["config"], *manifest.json()["layers"]]:
                data = registry.pull_blob(repository, blob["digest"])  # verified against the digest
                assert len(data) == blob["size"], f"{tag}: blob {blob['digest']} is partial"
            chart = read_chart(pull_chart(registry, repository, digest))
            assert chart_tag(chart.version) == tag, f"{tag} holds chart version {chart.version}"
        for tag in registry.tags(APP):
            digest = registry.manifest_digest(APP, tag)
            assert outcome.images.get(tag, digest) == digest, f"image {tag} points at another manifest"
            manifest = registry.pull_manifest(APP, digest).json()
            for blob in [manifest["config"], *manifest["layers"]]:
                assert len(registry.pull_blob(APP, blob["digest"])) == blob["size"], f"image {tag} has a partial blob"
        assert set(outcome.images) <= set(registry.tags(APP))


OUTSIDE_A_FLOW = pytest.mark.filterwarnings("ignore:Logger 'prefect.task_runs' attempted to send logs")


@OUTSIDE_A_FLOW
def test_a_401_fails_at_once_with_a_clear_message(upstream, tmp_path, monkeypatch):
    """Default retry policy (5 retries, 0.5 s backoff): a 401 is not transient, so one attempt and no wait.

    "No wait" is the sleeps of this thread (the registry client's and the task engine's retry waits), not the clock:
    a clock bound failed at 0.51 s on a loaded machine."""
    waits: list[float] = []
    real_sleep, caller = time.sleep, threading.current_thread()

    def recorded_sleep(seconds: float) -> None:
        if threading.current_thread() is caller:
            waits.append(seconds)
        real_sleep(seconds)

    with FaultyProxy(upstream.host, status=401) as proxy:
        config = config_for(proxy.host, tmp_path)
        package = package_chart(chart_dir(tmp_path), version=rc_version("1.0.0", fake_sha(0)), app_version="a")
        monkeypatch.setattr(time, "sleep", recorded_sleep)
        with pytest.raises(AuthError) as refused:
            push_rc_chart(config, package)
        monkeypatch.setattr(time, "sleep", real_sleep)
        assert len(proxy.requests) == 1, f"a 401 was retried: {proxy.requests}"
        with pytest.raises(AuthError):
            check_registry_access(config)
        assert len(proxy.requests) == 2
    message = str(refused.value)
    assert f"registry {proxy.host} refused access" in message and "; check the registry credentials" in message
    assert "\n" not in message
    assert not [seconds for seconds in waits if seconds >= 0.05], f"a 401 waited for a retry: {waits}"


@OUTSIDE_A_FLOW
def test_a_registry_failing_forever_ends_with_a_transient_error_after_the_retries(upstream, tmp_path, fast_retries):
    with FaultyProxy(upstream.host, status=503) as proxy:
        config = config_for(proxy.host, tmp_path)
        package = package_chart(chart_dir(tmp_path), version=rc_version("1.0.0", fake_sha(0)), app_version="a")
        with pytest.raises(TransientError) as failed:
            push_rc_chart(config, package)
    # each task attempt tries its first request REQUEST_ATTEMPTS times, then the task retries: bounded, and no more
    assert len(proxy.requests) == REQUEST_ATTEMPTS * (1 + push_rc_chart.retries), "bounded retries at both levels"
    assert "HTTP 503" in str(failed.value) and "; promo retries this" in str(failed.value)
