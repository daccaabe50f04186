"""Bench 7, config source: what a deployment's run pays to read its app's config from the Prefect server
(``stored_config``: one block read, then validation) next to reading promo.yaml from disk (``load_config``).

Both on the sandbox's promo.yaml, stored by ``store_config`` as `promo setup` does, on a temporary Prefect server
(SQLite, on this machine: no network latency, which a remote server adds once per run). The two reads are
interleaved round by round. A check says the stored config reads back equal to the file's.
"""

from __future__ import annotations

import json

from common import Report, progress, timed
from common import main as cli
from world import prefect_server, sandbox_world

VARIABLE_LIMIT = 5000  # prefect.types.MAX_VARIABLE_VALUE_LENGTH: why the config is a block, not a Variable


def bench(runs: int) -> Report:
    from promo.config import config_document, load_config
    from promo.flows.stored_config import store_config, stored_config

    report = Report("7 config", "a run's config read from the Prefect server vs from promo.yaml")
    with prefect_server(), sandbox_world("stored-config") as world:
        config = load_config(world.config_path)
        store_config(config)
        report.check("the stored config reads back equal", stored_config(config.app) == config, config.app)
        stored_config(config.app), load_config(world.config_path)  # warm-up: the client, the page cache
        progress(f"config: {runs} rounds of server read and file read")
        for _ in range(runs):
            report.add("stored_config (server)", timed(lambda: stored_config(config.app))[0])
            report.add("load_config (promo.yaml)", timed(lambda: load_config(world.config_path))[0])
        size = len(json.dumps(config_document(config)))
    report.ratio("server read / file read", "stored_config (server)", "load_config (promo.yaml)")
    report.note(f"the sandbox's stored document is {size} characters of JSON (a Variable holds {VARIABLE_LIMIT})")
    return report


if __name__ == "__main__":
    cli(bench, default_runs=30)
