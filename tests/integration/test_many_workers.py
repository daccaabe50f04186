"""Many workers for real: one Prefect server on PostgreSQL, three process workers as three hosts in miniature (their
own PREFECT_HOME, HOME, git cache and working directory), three apps whose configs live on the server, their
promote-test runs started at once with `prefect deployment run` and every gate approved with `promo approve`: all three
land, one commit each, nothing lost, every worker took part. The world and the round are tests/integration/fleet.py's;
the same round at scale (30 apps) is bench/many_workers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from promo.local.sandbox import Sandbox
from tests.integration.conftest import PrefectServer, postgres_cluster, prefect_server_on
from tests.integration.fleet import app_names, hosts, problems, promote_all, set_up_apps

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

APPS = 3  # the fast tier's round: one run per worker at the start (each holds one at a time); the bench runs 30
WORKERS = 3
LIMIT = 1  # one flow run at a time per worker: a worker busy importing a flow leaves the next run to the others


def test_three_promotions_on_three_workers_all_land(sandbox: Sandbox, tmp_path: Path) -> None:
    # A server of its own (its own PostgreSQL cluster): setting up the apps leaves a work pool, secrets, limits and
    # deployments that the session's shared server must not show to the tests that check what `promo setup` creates.
    (tmp_path / "server").mkdir()
    with postgres_cluster() as postgres, prefect_server_on(postgres, tmp_path / "server") as prefect_server:
        promote_on_workers(prefect_server, sandbox, tmp_path)


def promote_on_workers(prefect_server: PrefectServer, sandbox: Sandbox, tmp_path: Path) -> None:
    versions = set_up_apps(prefect_server, sandbox, app_names(APPS), tmp_path)
    cwd = tmp_path / "operator"  # where `prefect deployment run` and `promo approve` run: no promo.yaml there
    cwd.mkdir()
    with hosts(prefect_server, tmp_path / "hosts", WORKERS, limit=LIMIT) as workers:
        landed = promote_all(prefect_server, sandbox, versions, workers, cwd)
        assert problems(sandbox, versions, landed, workers) == []
    for host in workers:  # each host kept its own git caches, and never saw a promo.yaml
        assert any(host.cache.iterdir()), f"{host.name} has no git cache"
        assert not list(host.root.rglob("promo.yaml")), f"{host.name} holds a promo.yaml"
