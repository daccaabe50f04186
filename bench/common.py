"""What every bench shares: timing, medians, the result table, git and shell helpers, hyperfine.

A bench module measures, then hands a ``Report`` back: named series of seconds (``add``), ratios between two series
(``ratio``, with the goal as an upper bound), correctness checks (``check``) and notes. ``bench/run.py`` runs each
module in its own process and prints one table; a module run alone prints its own.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
CACHE_DIR = BENCH_DIR / ".cache"
FLOORS = BENCH_DIR / "floors"
RAW_PUSH = FLOORS / "raw_push.sh"
RAW_PUSH_SEQ = FLOORS / "raw_push_seq.sh"
GIT_IDENTITY = ("-c", "user.name=bench", "-c", "user.email=bench@localhost", "-c", "commit.gpgsign=false")

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GIT_TERMINAL_PROMPT", "0")


# -- measuring ---------------------------------------------------------------------------------------------------


def timed(call: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


@dataclass
class Ratio:
    label: str
    numerator: str
    denominator: str
    goal: float | None  # the ratio must be <= goal
    value: float = 0.0


@dataclass
class Check:
    label: str
    ok: bool
    detail: str


@dataclass
class Report:
    bench: str
    title: str
    series: dict[str, list[float]] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    ratios: list[Ratio] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    goals: list[tuple[str, str, float, float]] = field(default_factory=list)  # (label, series, bound, median)

    def add(self, label: str, seconds: float, unit: str = "s") -> None:
        self.series.setdefault(label, []).append(seconds)
        self.units[label] = unit

    def extend(self, label: str, values: Sequence[float], unit: str = "s") -> None:
        for value in values:
            self.add(label, value, unit)

    def median(self, label: str) -> float:
        return statistics.median(self.series[label])

    def ratio(self, label: str, numerator: str, denominator: str, goal: float | None = None) -> None:
        self.ratios.append(Ratio(label, numerator, denominator, goal))

    def absolute_goal(self, label: str, series: str, bound: float) -> None:
        """``series``' median must be below ``bound`` (seconds)."""
        self.goals.append((label, series, bound, 0.0))

    def check(self, label: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(label, ok, detail))

    def note(self, text: str) -> None:
        self.notes.append(text)

    def finish(self) -> dict:
        for ratio in self.ratios:
            if ratio.numerator in self.series and ratio.denominator in self.series:
                ratio.value = self.median(ratio.numerator) / self.median(ratio.denominator)
        self.goals = [
            (label, series, bound, self.median(series) if series in self.series else float("nan"))
            for label, series, bound, _ in self.goals
        ]
        return {
            "bench": self.bench,
            "title": self.title,
            "series": self.series,
            "units": self.units,
            "ratios": [ratio.__dict__ for ratio in self.ratios],
            "goals": [
                {"label": label, "series": series, "bound": bound, "median": median}
                for label, series, bound, median in self.goals
            ],
            "checks": [check.__dict__ for check in self.checks],
            "notes": self.notes,
        }


def fmt_value(value: float, unit: str) -> str:
    if unit != "s":
        return f"{value:.3g} {unit}".strip()
    if value >= 10:
        return f"{value:.1f} s"
    if value >= 1:
        return f"{value:.2f} s"
    return f"{value * 1000:.0f} ms" if value >= 0.01 else f"{value * 1000:.1f} ms"


def render(results: Sequence[dict]) -> str:
    """The markdown table of medians, then ratios against goals, checks and notes."""
    lines = ["| bench | measurement | median | min | max | runs |", "|---|---|---:|---:|---:|---:|"]
    for result in results:
        for label, values in result["series"].items():
            unit = result["units"].get(label, "s")
            lines.append(
                f"| {result['bench']} | {label} | {fmt_value(statistics.median(values), unit)} "
                f"| {fmt_value(min(values), unit)} | {fmt_value(max(values), unit)} | {len(values)} |"
            )
    lines += ["", "| bench | ratio (medians, same run) | value | goal | met |", "|---|---|---:|---:|---|"]
    for result in results:
        for ratio in result["ratios"]:
            goal = f"<= {ratio['goal']:g}x" if ratio["goal"] is not None else "(info)"
            met = "" if ratio["goal"] is None else ("yes" if ratio["value"] <= ratio["goal"] else "**no**")
            lines.append(f"| {result['bench']} | {ratio['label']} | {ratio['value']:.2f}x | {goal} | {met} |")
        for goal in result.get("goals", []):
            met = "yes" if goal["median"] < goal["bound"] else "**no**"
            lines.append(
                f"| {result['bench']} | {goal['label']} | {fmt_value(goal['median'], 's')} "
                f"| < {fmt_value(goal['bound'], 's')} | {met} |"
            )
    checks = [(result["bench"], check) for result in results for check in result["checks"]]
    if checks:
        lines += ["", "| bench | check | ok | detail |", "|---|---|---|---|"]
        for bench, check in checks:
            lines.append(f"| {bench} | {check['label']} | {'yes' if check['ok'] else '**NO**'} | {check['detail']} |")
    notes = [(result["bench"], note) for result in results for note in result["notes"]]
    if notes:
        lines += [""] + [f"- {bench}: {note}" for bench, note in notes]
    return "\n".join(lines)


def main(bench: Callable[[int], Report], default_runs: int) -> None:
    """The command line every bench module shares: ``--runs N`` and ``--json PATH`` (for bench/run.py)."""
    parser = argparse.ArgumentParser(description=(sys.modules["__main__"].__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS") or default_runs))
    parser.add_argument("--json", type=Path, help="write the result here (bench/run.py reads it)")
    args = parser.parse_args()
    result = bench(args.runs).finish()
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    else:
        print(render([result]))


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- shell and git -----------------------------------------------------------------------------------------------


def stop_group(process: subprocess.Popen, grace: float = 30) -> None:
    """Stop a process started with ``start_new_session=True`` and all it started: SIGTERM, then SIGKILL after
    ``grace`` seconds."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def run(*args: str | Path, cwd: Path | None = None, input: bytes | None = None, check: bool = True) -> str:
    result = subprocess.run([str(arg) for arg in args], cwd=cwd, input=input, capture_output=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed ({result.returncode}): {result.stderr.decode()[-2000:]}")
    return result.stdout.decode()


def git(repo: Path, *args: str) -> str:
    return run("git", "-C", repo, *GIT_IDENTITY, *args)


def remote_head(remote: Path, branch: str = "main") -> str:
    """The branch head of a bare remote, read from the loose ref when there is one (cheap enough to poll)."""
    try:
        return (remote / "refs" / "heads" / branch).read_text().strip()
    except FileNotFoundError:
        return git(remote, "rev-parse", branch).strip()


def wait_for_new_head(remote: Path, old: str, timeout: float = 60.0, branch: str = "main") -> float:
    """Poll the remote's ref until it moves from ``old``; returns the perf_counter time it was first seen moved."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if remote_head(remote, branch) != old:
            return time.perf_counter()
        time.sleep(0.001)
    raise TimeoutError(f"{remote} {branch} did not move from {old[:12]} within {timeout} s")


def raw_clone(remote: Path, dest: Path) -> Path:
    """The cached work tree the raw floor scripts push from."""
    if not (dest / ".git").exists():
        shutil.rmtree(dest, ignore_errors=True)
        run("git", "clone", "-q", remote.as_uri(), dest)
        for key, value in (("user.name", "raw"), ("user.email", "raw@localhost"), ("commit.gpgsign", "false")):
            run("git", "-C", dest, "config", key, value)
    return dest


def raw_push(clone: Path, path: str, version: str) -> float:
    """One run of the raw floor script; its wall time (bash start included, as hyperfine -N would count it)."""
    seconds, _ = timed(lambda: run(RAW_PUSH, clone, path, version))
    return seconds


def read_target_revisions(remote: Path, paths: Sequence[str], ref: str = "main") -> dict[str, str]:
    """path -> targetRevision at ``ref`` of a bare remote, read in one ``git cat-file --batch``."""
    request = "".join(f"{ref}:{path}\n" for path in paths).encode()
    out = subprocess.run(
        ["git", "-C", str(remote), "cat-file", "--batch"], input=request, capture_output=True, check=True
    ).stdout
    found: dict[str, str] = {}
    position = 0
    for path in paths:
        header_end = out.index(b"\n", position)
        header = out[position:header_end].split()
        if header[-1] == b"missing":
            position = header_end + 1
            continue
        size = int(header[2])
        body = out[header_end + 1 : header_end + 1 + size].decode()
        position = header_end + 1 + size + 1
        for line in body.splitlines():
            if line.strip().startswith("targetRevision:"):
                found[path] = line.split(":", 1)[1].split("#")[0].strip().strip("\"'")
                break
    return found


@contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"promo-bench-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- hyperfine ---------------------------------------------------------------------------------------------------


def hyperfine(
    commands: dict[str, str], runs: int, *, prepare: str | None = None, warmup: int = 1
) -> dict[str, list[float]]:
    """label -> wall times of each run of each command under hyperfine (no intermediate shell); {} without it."""
    if shutil.which("hyperfine") is None:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "hyperfine.json"
        args = ["hyperfine", "-N", "--style", "none", "--runs", str(runs), "--warmup", str(warmup)]
        args += ["--export-json", str(export)]
        if prepare:
            args += ["--prepare", prepare]
        for label, command in commands.items():
            args += ["--command-name", label, command]
        run(*args)
        data = json.loads(export.read_text())
    return {entry["command"]: list(entry["times"]) for entry in data["results"]}


def machine() -> dict[str, str]:
    memory = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        "?",
    )
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    versions = {}
    for tool, args in (
        ("git", ["--version"]),
        ("skopeo", ["--version"]),
        ("buildah", ["--version"]),
        ("hyperfine", ["--version"]),
    ):
        try:
            versions[tool] = run(tool, *args).strip()
        except (OSError, RuntimeError):
            versions[tool] = "missing"
    try:
        import prefect

        prefect_version = prefect.__version__
    except ImportError:
        prefect_version = "?"
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": cpu,
        "memory": memory,
        "python": sys.version.split()[0],
        "prefect": prefect_version,
        "kernel": os.uname().release,
        **versions,
    }
