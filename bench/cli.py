"""Bench 6, CLI start-up: how long `promo --help`, `promo status` and the other commands that run no flow take, next
to `python -c pass` (the floor: an interpreter that starts and stops) and `python -c "import prefect"` (what every
command paid before they stopped importing Prefect); and what a command that runs a flow adds to the flow itself.

Each command is a new process of the venv's `promo` script, on a sandbox (local registry and bare remotes), the
commands interleaved round by round; then the same under hyperfine where it is installed. A check per command says
whether it imported anything of Prefect (it must not).

Flow commands, against Prefect's own floor: with `promo server start`'s server up (under the bench's own promo
home), round by round, `promo bump-version` and a script that runs an empty `@flow` against the same server. What
each adds to its flow is its wall time minus its flow run's own `total_run_time`, read back from the server; the goal
is that promo's command adds at most 1.3x what Prefect itself adds.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import httpx

from common import Report, hyperfine, progress, scratch, timed
from common import main as cli

from promo.local.processes import free_port

PROMO = Path(sys.executable).with_name("promo")
FLOOR = "python -c pass"
PREFECT = 'python -c "import prefect"'

# Prints, at exit, the prefect modules a command loaded (stdout is the command's own, so this goes to stderr last).
_WRAPPER = """
import atexit, sys
atexit.register(lambda: print(sorted(m for m in sys.modules if m.partition(".")[0] == "prefect"), file=sys.stderr))
sys.argv = ["promo", *sys.argv[1:]]
from promo.cli.main import main
main()
"""


def commands(config: Path) -> dict[str, list[str]]:
    """label -> argv; the labels are what the table shows."""
    promo = str(PROMO)
    return {
        FLOOR: [sys.executable, "-c", "pass"],
        PREFECT: [sys.executable, "-c", "import prefect"],
        "promo --help": [promo, "--help"],
        "promo status": [promo, "status", "-c", str(config)],
        "promo releases": [promo, "releases", "-c", str(config)],
        "promo history": [promo, "history", "-c", str(config)],
    }


def run_once(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one run: the CPU time barely moves with the machine's load."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds = timed(lambda: subprocess.run(argv, capture_output=True, check=True, env=env, cwd=cwd))[0]
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def imported_prefect(argv: list[str]) -> list[str]:
    done = subprocess.run([sys.executable, "-c", _WRAPPER, *argv[1:]], capture_output=True, text=True, check=True)
    return json.loads(done.stderr.strip().splitlines()[-1].replace("'", '"'))


def flow_run_seconds(api_url: str, flow_name: str) -> float:
    """The newest run of ``flow_name``: its own run time, as the server computed it."""
    response = httpx.post(
        f"{api_url}/flow_runs/filter",
        json={"flows": {"name": {"any_": [flow_name]}}, "sort": "EXPECTED_START_TIME_DESC", "limit": 1},
        timeout=30,
    )
    [run] = response.raise_for_status().json()
    return float(run["total_run_time"])


EMPTY_FLOW = "empty-flow"
_EMPTY_FLOW_SCRIPT = f"""
from prefect import flow

@flow(name="{EMPTY_FLOW}")
def empty() -> None:
    pass

empty()
"""


def bench_flow_commands(report: Report, runs: int, work: Path, config: Path) -> None:
    """`promo bump-version` vs an empty `@flow` run from a script, each a new process, against one running server."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PREFECT_", "PROMO_"))}
    env.update(PROMO_HOME=str(work / "home"), PROMO_CONFIG=str(config))

    def promo(*args: str) -> str:
        return subprocess.run([str(PROMO), *args], env=env, capture_output=True, text=True, check=True, cwd=work).stdout

    started = promo("server", "start", "--port", str(free_port()))
    api_url = re.search(r"UI (\S+) ", started)[1] + "/api"
    script_env = {**env, "PREFECT_API_URL": api_url}
    ways = {
        "promo bump-version": ("bump-version", env),
        "empty @flow from a script (Prefect's floor)": (EMPTY_FLOW, script_env),
    }
    argvs = {
        "promo bump-version": lambda round_number: [str(PROMO), "bump-version", ["patch", "minor"][round_number % 2]],
        "empty @flow from a script (Prefect's floor)": lambda _: [sys.executable, "-c", _EMPTY_FLOW_SCRIPT],
    }
    try:
        for label, (_, way_env) in ways.items():  # warm-up: the git caches, the server's first queries
            subprocess.run(argvs[label](0), env=way_env, capture_output=True, check=True, cwd=work)
        progress(f"cli: {runs} rounds of `promo bump-version` and of an empty flow")
        for round_number in range(runs):
            for label, (flow_name, way_env) in ways.items():
                seconds, _ = run_once(argvs[label](round_number), env=way_env, cwd=work)
                flow_seconds = flow_run_seconds(api_url, flow_name)
                report.add(label, seconds)
                report.add(f"{label}: the flow run itself", flow_seconds)
                report.add(f"{label}: added around the flow", seconds - flow_seconds)
    finally:
        promo("server", "stop")
    command, floor = (f"{label}: added around the flow" for label in ways)
    report.ratio("flow command, added around its flow: promo / Prefect's empty flow", command, floor, goal=1.3)


def bench(runs: int) -> Report:
    from promo.local.sandbox import create_sandbox, stop_sandbox

    report = Report("6 cli", "promo commands, each a new process, vs `python -c pass`; a flow command's overhead")
    with scratch("cli") as work:
        made = create_sandbox(work / "world")
        try:
            bench_flow_commands(report, runs, work, made.config_path)
            argvs = commands(made.config_path)
            for label, argv in argvs.items():
                if label.startswith("promo "):
                    loaded = imported_prefect(argv)
                    report.check(f"{label} imports no Prefect", not loaded, f"{len(loaded)} prefect modules loaded")
            for argv in argvs.values():  # warm-up: page cache, .pyc files, the sandbox's git cache
                subprocess.run(argv, capture_output=True, check=True)

            progress(f"cli: {runs} rounds of {len(argvs)} commands")
            for _ in range(runs):
                for label, argv in argvs.items():
                    seconds, cpu = run_once(argv)
                    report.add(label, seconds)
                    report.add(f"{label} (CPU time)", cpu)

            progress("cli: the same under hyperfine")
            quoted = {label: " ".join(argv) for label, argv in argvs.items()}
            quoted[PREFECT] = f"{sys.executable} -c 'import prefect'"
            for label, times in hyperfine(quoted, runs=max(10, runs)).items():
                report.extend(f"{label} (hyperfine)", times)
        finally:
            stop_sandbox(made.directory)

    for label in ("promo --help", "promo status", "promo releases", "promo history", PREFECT):
        report.ratio(f"{label} / python -c pass", label, FLOOR)
        report.ratio(f"{label} / python -c pass, CPU time", f"{label} (CPU time)", f"{FLOOR} (CPU time)")
    report.absolute_goal("promo --help", "promo --help", 0.5)
    report.absolute_goal("promo status (sandbox)", "promo status", 1.0)
    report.absolute_goal("promo status (sandbox), CPU time", "promo status (CPU time)", 1.0)
    report.note(f"promo is {PROMO} (the venv's console script); status reads the sandbox's GitOps repo and registry")
    return report


if __name__ == "__main__":
    cli(bench, default_runs=10)
