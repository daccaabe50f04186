"""Bench 7, many workers for real: 30 promote-test runs on three process workers that share nothing but the server.

The world and the round are the integration test's (tests/integration/test_many_workers.py, fleet.py): a throwaway
PostgreSQL cluster, `prefect server start` on it, a sandbox with 30 apps on one GitOps remote, their configs stored on
the server, three process workers (``--limit 10``) each with its own PREFECT_HOME, HOME, git cache and working
directory. The round: 30 `prefect deployment run promote-test/<app>` at once, wait until all 30 are suspended at
their gates, then 30 `promo approve RUN` at once. An approval's time is when the server resumed the run (the first
state after Suspended: a `promo approve` process can return long after it sent the decision); a commit's is when a
thread polling the bare remote's ref (every 20 ms) first saw it. Measured: the wall time from the approvals' start
to the last commit (and to the last run Completed, verification of test included), and each app's approval ->
commit, as p50 and p95. Checked: every app's test environment at its dev version, exactly one
commit per app with its trailers, every worker ran some of the runs.

One round per bench run (its 30 promotions are the samples); ``--runs N`` runs N rounds, each on a new world.
"""

from __future__ import annotations

import sys
from pathlib import Path

from common import ROOT, Report, progress, scratch
from common import main as cli

sys.path.insert(0, str(ROOT))  # the world is the integration test's: tests/integration/fleet.py

APPS = 30
WORKERS = 3
LIMIT = 10


def bench(runs: int) -> Report:
    report = Report(
        "many-workers",
        f"{APPS} promote-test runs on {WORKERS} process workers with their own caches, "
        "one Prefect server on PostgreSQL",
    )
    for round_number in range(1, runs + 1):
        progress(f"round {round_number} of {runs}")
        one_round(report)
    return report


def one_round(report: Report) -> None:
    from promo.local.sandbox import create_sandbox, stop_sandbox
    from tests.integration.conftest import postgres_cluster, prefect_server_on
    from tests.integration.fleet import app_names, hosts, percentile, problems, promote_all, set_up_apps

    with scratch("many-workers") as directory, postgres_cluster() as postgres:
        (directory / "server").mkdir()
        with prefect_server_on(postgres, directory / "server") as server:
            sandbox = create_sandbox(directory / "world")
            try:
                versions = set_up_apps(server, sandbox, app_names(APPS), directory)
                operator = directory / "operator"
                operator.mkdir()
                with hosts(server, directory / "hosts", WORKERS, limit=LIMIT) as workers:
                    landed = promote_all(server, sandbox, versions, workers, operator)
                    found = problems(sandbox, versions, landed, workers)
            finally:
                stop_sandbox(sandbox.directory)
    latencies = landed.approval_to_commit()
    start = landed.suspended  # the approvals start
    report.add(f"{APPS} `prefect deployment run` at once -> all suspended at their gates", start - landed.started)
    report.add(f"{APPS} `promo approve` at once -> the last one returned", max(landed.approved.values()) - start)
    report.add(f"wall: approvals start -> last of {APPS} commits on the remote", max(landed.landed.values()) - start)
    report.add(f"wall: approvals start -> all {APPS} runs Completed (test verified)", landed.completed - start)
    report.extend("approval -> commit, per app (median = p50)", latencies)
    report.add("approval -> commit, p95", percentile(latencies, 0.95))
    report.check(
        f"all {APPS} landed: one commit each, nothing lost, every worker ran some",
        not found and len(latencies) == APPS,
        "; ".join(found) or f"{len(latencies)} commits seen, {len(landed.done)} runs Completed",
    )


if __name__ == "__main__":
    cli(bench, default_runs=1)
