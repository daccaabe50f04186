"""The repository stands on its own: nothing it ships or documents points outside it."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def tracked_files() -> list[Path]:
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], check=True, capture_output=True).stdout
    return [ROOT / name for name in listed.decode().split("\0") if name]


def test_no_tracked_file_points_outside_the_repository():
    outside = "../" + "shared"  # spelled in two parts so this file does not match itself
    offenders = [
        str(path.relative_to(ROOT))
        for path in tracked_files()
        if path.is_file() and outside in path.read_text(encoding="utf-8", errors="replace")
    ]
    assert offenders == []
