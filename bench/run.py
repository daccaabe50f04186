"""Run promo's benchmarks and print one table of medians, ratios against goals, and checks.

    .venv/bin/python bench/run.py                     # all of them (what `make bench` runs)
    .venv/bin/python bench/run.py approval registry   # some of them
    .venv/bin/python bench/run.py --runs 5            # override every bench's number of runs

Each bench runs in its own process (a temporary Prefect server, forked workers and sandboxes never outlive it);
its log goes to bench/results/<name>.log, its figures to bench/results/<name>.json, and the combined table to
bench/results/latest.md. Each run also leaves bench/results/<UTC start>.json (machine, code, every bench's figures),
the run-by-run log that latest.md and the per-bench files overwrite.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from common import BENCH_DIR, machine, render

BENCHES = {
    "approval": "approval.py",
    "contention": "contention.py",
    "repo-size": "repo_size.py",
    "flows": "flow_overhead.py",
    "registry": "registry_transfer.py",
    "cli": "cli.py",
    "many-workers": "many_workers.py",
    "config": "stored_config.py",
    "status-all": "status_all.py",
    "verdict-refs": "verdict_refs.py",
}
RESULTS = BENCH_DIR / "results"


def code_version() -> str:
    """The commit measured, and whether files outside bench/ differ from it (others may be editing)."""
    root = BENCH_DIR.parent
    try:
        head = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--", ".", ":!bench", ":!docs/performance.md"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.splitlines()
    except OSError:
        return "unknown (no git)"
    return f"{head}" + (f" + {len(dirty)} uncommitted file(s) outside bench/" if dirty else " (clean outside bench/)")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    parser = argparse.ArgumentParser(description="promo's benchmarks")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"benches to run: {', '.join(BENCHES)} (default: all)")
    parser.add_argument("--runs", type=int, help="runs per measurement for every bench (default: each bench's own)")
    args = parser.parse_args()
    names = args.names or list(BENCHES)
    unknown = [name for name in names if name not in BENCHES]
    if unknown:
        parser.error(f"unknown bench {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    RESULTS.mkdir(exist_ok=True)

    started_at = datetime.now(timezone.utc)
    host = machine()
    version = code_version()
    header = (
        f"machine: {host['nproc']} CPUs ({host['cpu']}), {host['memory']} memory, kernel {host['kernel']}; "
        f"Python {host['python']}, Prefect {host['prefect']}, {host['git']}, {host['skopeo']}, {host['hyperfine']}\n"
        f"code: {version}"
    )
    print(header, flush=True)
    results, failed = [], []
    started_all = time.perf_counter()
    for name in names:
        out, log = RESULTS / f"{name}.json", RESULTS / f"{name}.log"
        out.unlink(missing_ok=True)
        command = [sys.executable, str(BENCH_DIR / BENCHES[name]), "--json", str(out)]
        if args.runs:
            command += ["--runs", str(args.runs)]
        before = load_average()
        print(f"[{time.strftime('%H:%M:%S')}] {name}: running (load average {before}; log: {log})", flush=True)
        started = time.perf_counter()
        with log.open("w") as handle:
            code = subprocess.call(
                command, stdout=handle, stderr=subprocess.STDOUT, cwd=BENCH_DIR.parent, env=os.environ
            )
        seconds = time.perf_counter() - started
        if code != 0 or not out.exists():
            failed.append(name)
            print(
                f"[{time.strftime('%H:%M:%S')}] {name}: FAILED (exit {code}) after {seconds:.0f} s; last lines of {log}:"
            )
            print("\n".join(log.read_text(errors="replace").splitlines()[-15:]))
            continue
        result = json.loads(out.read_text())
        result["notes"].append(f"ran {seconds:.0f} s; load average before {before}, after {load_average()}")
        results.append(result)
        print(f"[{time.strftime('%H:%M:%S')}] {name}: done in {seconds:.0f} s", flush=True)

    table = render(results)
    total = time.perf_counter() - started_all
    summary = f"{header}\n\ntotal: {total:.0f} s\n\n{table}\n"
    (RESULTS / "latest.md").write_text(summary)
    run_log = RESULTS / f"{started_at:%Y-%m-%dT%H%M%SZ}.json"
    record = {
        "started": started_at.isoformat(timespec="seconds"),
        "machine": host,
        "code": version,
        "total_seconds": round(total),
        "failed": failed,
        "results": results,
    }
    run_log.write_text(json.dumps(record, indent=2))
    print()
    print(table)
    print(f"\ntotal {total:.0f} s; table written to {RESULTS / 'latest.md'}, this run's figures to {run_log}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
