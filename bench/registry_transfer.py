"""Bench 5, registry transfer: push, pull and copy a ~5 MB chart (an incompressible 5 MiB file inside) with promo's
OCI client vs ``skopeo copy``, on the same docker-registry.

Every push sends bytes the registry has never seen (a fresh random chart per run, for both tools), so nothing is
skipped as already present. promo's client runs in this process with a new ``Registry`` per operation, as the tasks
open one; skopeo is a new process per copy (its start-up is part of what it costs). Transfers:

- push: promo ``push_chart`` vs ``skopeo copy dir:CHART docker://HOST/charts/big:TAG`` (the dir: layouts are made
  through a second, staging registry, so skopeo cannot mount blobs it has seen on this one)
- pull: promo ``pull_chart`` (bytes in memory, digest-checked) vs ``skopeo copy docker://... dir:NEW_DIR``
- copy to a new repository: promo pull + push (what release-prod does) vs ``skopeo copy docker://... docker://...``
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from common import Report, hyperfine, progress, run, scratch, timed
from common import main as cli

PAYLOAD_BYTES = 5 * 1024 * 1024
CHART = "big"
REPOSITORY = f"charts/{CHART}"
NO_TLS = ("--src-tls-verify=false", "--dest-tls-verify=false")


def _chart_dir(root: Path) -> Path:
    chart = root / "chart"
    (chart / "templates").mkdir(parents=True, exist_ok=True)
    (chart / "files").mkdir(exist_ok=True)
    (chart / "Chart.yaml").write_text(
        "apiVersion: v2\nname: big\ndescription: a chart with a 5 MiB payload\nversion: 0.1.0\n"
    )
    (chart / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: payload\nbinaryData:\n"
        '  payload: {{ .Files.Get "files/payload.bin" | b64enc }}\n'
    )
    return chart


def _fresh_package(chart: Path, version: str):
    from promo.registry.charts import package_chart

    (chart / "files" / "payload.bin").write_bytes(os.urandom(PAYLOAD_BYTES))
    return package_chart(chart, version=version, app_version="bench")


def bench(runs: int) -> Report:
    from promo.registry.charts import ChartPackage, read_chart
    from promo.registry.helm import pull_chart, push_chart
    from promo.registry.oci import Registry
    from promo.local.registry import RegistryServer

    report = Report("5 registry", "a ~5 MB chart: promo's OCI client vs skopeo copy, same registry")
    with scratch("registry") as work:
        server = RegistryServer.start(work / "registry")
        staging = RegistryServer.start(work / "staging")
        try:
            host = server.host
            chart = _chart_dir(work)
            progress(f"registry: packaging {2 * runs + 1} charts with fresh 5 MiB payloads")
            ours = [_fresh_package(chart, f"0.1.0-o{index}") for index in range(runs + 1)]
            theirs = []
            for index in range(runs + 1):
                package = _fresh_package(chart, f"0.1.0-s{index}")
                with Registry(staging.host) as registry:
                    push_chart(registry, REPOSITORY, package)
                layout = work / f"skopeo-src-{index}"
                run(
                    "skopeo",
                    "copy",
                    *NO_TLS,
                    f"docker://{staging.host}/{REPOSITORY}:{package.version}",
                    f"dir:{layout}",
                )
                theirs.append((package.version, layout))
            size = len(ours[0].data)
            report.note(
                f"chart package: {size / 1e6:.2f} MB (.tgz of a 5 MiB random file); registry: docker-registry on {host}"
            )

            def our_push(package: ChartPackage) -> float:
                def call() -> object:
                    with Registry(host) as registry:
                        return push_chart(registry, REPOSITORY, package)

                return timed(call)[0]

            def our_pull(version: str) -> float:
                def call() -> bytes:
                    with Registry(host) as registry:
                        return pull_chart(registry, REPOSITORY, version)

                seconds, data = timed(call)
                assert data == ours[-1].data  # the one pulled every round
                return seconds

            def our_copy(version: str, repository: str) -> float:
                def call() -> object:
                    with Registry(host) as registry:
                        data = pull_chart(registry, REPOSITORY, version)
                        contents = read_chart(data)
                        package = ChartPackage(contents.name, contents.version, contents.app_version, data)
                        return push_chart(registry, repository, package)

                return timed(call)[0]

            def skopeo(*args: str) -> float:
                return timed(lambda: run("skopeo", "copy", "--quiet", *args))[0]

            # Warm-up: both tools once (page cache, registry paths), not counted.
            our_push(ours[-1])
            skopeo("--dest-tls-verify=false", f"dir:{theirs[-1][1]}", f"docker://{host}/{REPOSITORY}:{theirs[-1][0]}")
            pulled = ours[-1].version
            our_pull(pulled)
            skopeo(*NO_TLS, f"docker://{host}/{REPOSITORY}:{pulled}", f"dir:{work / 'pull-warm'}")

            progress(f"registry: {runs} rounds")
            for index in range(runs):
                report.add("push: promo push_chart", our_push(ours[index]))
                version, layout = theirs[index]
                report.add(
                    "push: skopeo copy dir: -> docker://",
                    skopeo("--dest-tls-verify=false", f"dir:{layout}", f"docker://{host}/{REPOSITORY}:{version}"),
                )
                report.add("pull: promo pull_chart (to memory)", our_pull(pulled))
                report.add(
                    "pull: skopeo copy docker:// -> dir:",
                    skopeo(*NO_TLS, f"docker://{host}/{REPOSITORY}:{pulled}", f"dir:{work / f'pull-{index}'}"),
                )
                report.add(
                    "copy to a new repository: promo pull + push",
                    our_copy(ours[index].version, f"copies/o{index}/{CHART}"),
                )
                report.add(
                    "copy to a new repository: skopeo copy docker:// -> docker://",
                    skopeo(
                        *NO_TLS,
                        f"docker://{host}/{REPOSITORY}:{ours[index].version}",
                        f"docker://{host}/copies/s{index}/{CHART}:1",
                    ),
                )

            pull_dir = work / "pull-hyperfine"
            timings = hyperfine(
                {
                    "pull": f"skopeo copy --quiet {' '.join(NO_TLS)} docker://{host}/{REPOSITORY}:{pulled} dir:{pull_dir}"
                },
                runs=max(10, runs),
                prepare=f"rm -rf {pull_dir}",
            )
            if timings:
                report.extend("pull: skopeo copy docker:// -> dir: (hyperfine)", timings["pull"])
            started = time.perf_counter()
            run("skopeo", "--version")
            report.note(
                f"skopeo process start-up alone (skopeo --version): {(time.perf_counter() - started) * 1000:.0f} ms"
            )
        finally:
            server.stop()
            staging.stop()

    report.ratio("push: promo / skopeo", "push: promo push_chart", "push: skopeo copy dir: -> docker://", 1.3)
    report.ratio(
        "pull: promo / skopeo", "pull: promo pull_chart (to memory)", "pull: skopeo copy docker:// -> dir:", 1.3
    )
    report.ratio(
        "copy: promo / skopeo",
        "copy to a new repository: promo pull + push",
        "copy to a new repository: skopeo copy docker:// -> docker://",
        1.3,
    )
    return report


if __name__ == "__main__":
    cli(bench, default_runs=7)
