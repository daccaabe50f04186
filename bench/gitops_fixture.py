"""GitOps repositories of any size, written with one ``git fast-import`` stream (20,000 commits in seconds).

Layout as promo expects it: ``registry/environments/<env>/<cluster>/<app>.yaml``, one single-source Argo CD
Application per app, environment and cluster. The first commit adds every manifest; each later commit moves one
manifest's ``targetRevision`` (a promotion), apps and environments picked by a seeded random generator, so the
history looks like years of promotions and is the same on every machine.

    python bench/gitops_fixture.py DEST.git --apps 2000 --commits 20000
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = "registry/environments"
ENVIRONMENTS = (("dev", "preprod"), ("test", "preprod"), ("stage", "preprod"), ("prod", "prod"))
EPOCH = 1_600_000_000
GENERATOR_VERSION = 1  # bump when the layout or content changes: cached repos are keyed by it


def app_name(index: int) -> str:
    return f"app-{index:04d}"


def manifest_path(app: str, env: str, cluster: str) -> str:
    return f"{ROOT}/{env}/{cluster}/{app}.yaml"


def manifest(app: str, env: str, cluster: str, version: str) -> bytes:
    return f"""\
# Argo CD Application: {app} in {env} on cluster {cluster}.
# promo owns spec.source.targetRevision, the chart version deployed here.
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: {app}-{env}
  namespace: argocd
  labels:
    app.kubernetes.io/name: {app}
    app.kubernetes.io/part-of: {env}
  finalizers:
    - resources-finalizer.argocd.argoproj.io
spec:
  project: default
  source:
    repoURL: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/charts
    chart: {app}
    targetRevision: "{version}"
    helm:
      releaseName: {app}
  destination:
    name: {cluster}
    namespace: {app}-{env}
  syncPolicy:
    automated:
      prune: true
      selfHeal: true
    syncOptions:
      - CreateNamespace=true
""".encode()


def _data(payload: bytes) -> bytes:
    return b"data %d\n%s\n" % (len(payload), payload)


def _stream(apps: int, commits: int, seed: int):
    """The fast-import commands, yielded in chunks."""
    rng = random.Random(seed)
    names = [app_name(i) for i in range(apps)]
    chunk = [b"commit refs/heads/main\n", b"committer seed <seed@localhost> %d +0000\n" % EPOCH]
    chunk.append(_data(f"Argo CD Applications of {apps} apps".encode()))
    for app in names:
        for env, cluster in ENVIRONMENTS:
            chunk.append(b"M 100644 inline %s\n" % manifest_path(app, env, cluster).encode())
            chunk.append(_data(manifest(app, env, cluster, "1.0.0")))
    chunk.append(b"\n")
    yield b"".join(chunk)
    chunk = []
    for number in range(1, commits):
        app = rng.choice(names)
        env, cluster = rng.choice(ENVIRONMENTS)
        version = f"1.{number // 1000}.{number % 1000}"
        path = manifest_path(app, env, cluster).encode()
        chunk.append(b"commit refs/heads/main\n")
        chunk.append(b"committer promo <promo@localhost> %d +0000\n" % (EPOCH + number * 60))
        chunk.append(_data(f"promote({app}): -> {env} {version}".encode()))
        chunk.append(b"M 100644 inline %s\n" % path)
        chunk.append(_data(manifest(app, env, cluster, version)))
        chunk.append(b"\n")
        if len(chunk) >= 6000:
            yield b"".join(chunk)
            chunk = []
    yield b"".join(chunk)


def build(dest: Path, *, apps: int, commits: int, seed: int = 42, gc: bool = True) -> Path:
    """A bare repository at ``dest`` on branch main; built aside and moved into place, so it is whole or absent."""
    dest = Path(dest)
    building = dest.with_name(dest.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(building)], check=True)
    importer = subprocess.Popen(["git", "-C", str(building), "fast-import", "--quiet", "--done"], stdin=subprocess.PIPE)
    assert importer.stdin is not None
    for chunk in _stream(apps, commits, seed):
        importer.stdin.write(chunk)
    importer.stdin.write(b"done\n")
    importer.stdin.close()
    if importer.wait() != 0:
        raise RuntimeError("git fast-import failed")
    if gc:
        # As a hosted remote would be: one pack with deltas, packed refs. Keeps fetch negotiation honest.
        subprocess.run(["git", "-C", str(building), "gc", "-q"], check=True)
    shutil.rmtree(dest, ignore_errors=True)
    building.rename(dest)
    return dest


def cached(apps: int, commits: int, cache_dir: Path) -> Path:
    """The repository for (apps, commits), built once under ``cache_dir`` and reused by later runs."""
    dest = Path(cache_dir) / f"gitops-v{GENERATOR_VERSION}-{apps}apps-{commits}commits.git"
    if not (dest / "HEAD").exists():
        build(dest, apps=apps, commits=commits)
    return dest


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path)
    parser.add_argument("--apps", type=int, default=2000)
    parser.add_argument("--commits", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    started = time.perf_counter()
    build(args.dest, apps=args.apps, commits=args.commits, seed=args.seed)
    print(f"built {args.dest} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
