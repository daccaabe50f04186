"""The installed distribution owns one import namespace: ``promo``, with flows, tasks and deployments inside it."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds the wheel and installs it into a fresh venv

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """promo's wheel, built from this checkout and installed without dependencies into a clean venv."""
    work = tmp_path_factory.mktemp("wheel")
    wheels = work / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(wheels), str(ROOT)],
        check=True, capture_output=True, text=True, cwd=work, timeout=600,
    )
    (work / "build.log").write_text(built.stdout + built.stderr)
    env_dir = work / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    (wheel,) = wheels.glob("promo-*.whl")
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)], check=True, timeout=600)
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    return Path(purelib)


def test_the_wheel_adds_no_top_level_package_but_promo(installed: Path):
    before = {"pip", "_distutils_hack", "setuptools", "pkg_resources", "distutils-precedence.pth"}
    added = {p.name for p in installed.iterdir() if not p.name.endswith(".dist-info") and p.name not in before}
    added.discard("__pycache__")
    assert added == {"promo"}


def test_flows_tasks_and_deployments_live_inside_promo(installed: Path):
    for module in ("flows/promote.py", "flows/gate.py", "tasks/gitops.py", "deployments/deploy.py", "cli/main.py"):
        assert (installed / "promo" / module).is_file(), module
    assert (installed / "promo" / "sample-world" / "app").is_dir()


def test_the_build_warns_of_no_data_folder_taken_for_a_package(installed: Path):
    """setuptools warns when a data folder under promo is a valid module name ("Package would be ignored"): the
    sample world's folder is named so that it is not one."""
    log = (installed.parents[3] / "build.log").read_text()
    assert "Package would be ignored" not in log


def test_every_package_folder_of_promo_is_shipped(installed: Path):
    """A subpackage left out of pyproject's explicit list would install as a hole; every folder must arrive."""
    shipped = {p.parent.relative_to(installed) for p in installed.glob("promo/**/__init__.py")}
    in_tree = {p.parent.relative_to(ROOT) for p in ROOT.glob("promo/**/__init__.py")}
    in_tree |= {Path("promo") / folder for folder in ("flows", "tasks", "deployments")}
    assert in_tree <= shipped
