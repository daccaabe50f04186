"""The console script's half of the warm process: where its socket lives, what 'the same code' means, the message
framing, and that every flow command is known to the console script before the CLI module is imported."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from promo.cli import launch
from promo.local import handoff


def test_the_socket_sits_in_the_server_folder_when_the_path_fits(tmp_path: Path) -> None:
    assert handoff.socket_path(tmp_path) == tmp_path / "warm.sock"


def test_a_long_server_folder_gets_a_private_socket_under_tmp(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    path = handoff.socket_path(deep)

    assert len(os.fsencode(path)) <= 100
    assert path.parent == Path("/tmp") / f"promo-{os.getuid()}"
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert handoff.socket_path(deep) == path  # found again by the next command
    assert handoff.socket_path(tmp_path / ("e" * 120)) != path


@pytest.fixture()
def source_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    package = tmp_path / "fingerprinted"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "module.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(handoff, "SOURCE_PACKAGES", ("fingerprinted",))
    return package


def test_the_fingerprint_changes_with_an_edited_source_file(source_package: Path) -> None:
    before = handoff.code_fingerprint()
    assert handoff.code_fingerprint() == before

    module = source_package / "sub" / "module.py"
    stat = module.stat()
    os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert handoff.code_fingerprint() != before


def test_the_fingerprint_changes_with_a_new_source_file_and_ignores_bytecode(source_package: Path) -> None:
    before = handoff.code_fingerprint()
    (source_package / "__pycache__").mkdir()
    (source_package / "__pycache__" / "module.cpython-311.pyc").write_bytes(b"\0")
    assert handoff.code_fingerprint() == before

    (source_package / "new.py").write_text("")
    assert handoff.code_fingerprint() != before


def test_messages_are_read_whole_across_partial_reads() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(b'{"started": 12')
        theirs.sendall(b'}\n{"exit"')
        theirs.sendall(b": 3}\n")
        theirs.shutdown(socket.SHUT_WR)
        assert list(handoff.messages(ours)) == [{"started": 12}, {"exit": 3}]


def test_no_warm_process_means_the_command_runs_here(tmp_path: Path) -> None:
    assert handoff.hand_off(["bump-version", "patch"], tmp_path) is None


def test_a_socket_nobody_listens_on_means_the_command_runs_here(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as left_behind:
        left_behind.bind(os.fspath(handoff.socket_path(tmp_path)))  # bound, never listening: a killed process's
    assert handoff.hand_off(["bump-version", "patch"], tmp_path) is None


def test_the_console_script_knows_every_flow_command() -> None:
    from promo.cli.main import FLOW_COMMAND_NAMES

    assert launch.FLOW_COMMANDS == FLOW_COMMAND_NAMES


def test_the_console_script_decides_before_importing_the_cli() -> None:
    """What the script imports for a command no warm process takes: the standard library and three small modules."""
    code = (
        "import sys; from promo.cli import launch; "
        "print(sorted(m for m in sys.modules if m.startswith(('promo', 'typer', 'prefect', 'httpx'))))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == str(
        sorted(["promo", "promo.cli", "promo.cli.launch", "promo.errors", "promo.local", "promo.local.handoff",
                "promo.local.home"])
    )  # fmt: skip
