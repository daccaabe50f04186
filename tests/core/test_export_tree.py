"""The build context is exactly the commit's tree: ``Mirror.export_tree`` against real bare remotes."""

from __future__ import annotations

import os
from pathlib import Path

from git import cmd as git_cmd
import pytest

from promo.errors import InputError
from promo.gitops.mirror import Mirror
from tests.fixtures.gitrepos import GitRemote, git, make_remote

# Bytes no text filter may touch: CRLF, a lone CR, NUL and invalid UTF-8.
BINARY = b"line one\r\nline two\r\x00\xff\xfe end"


@pytest.fixture
def app_remote(tmp_path: Path) -> GitRemote:
    return make_remote(tmp_path / "app", {"README.md": "# hello\n"})


def commit_in_writer(remote: GitRemote, change, message: str = "change") -> str:
    """Let ``change(work_tree)`` edit the writer clone with plain files, links and modes, then commit and push."""
    git(remote.writer, "fetch", "--quiet", "origin")
    git(remote.writer, "reset", "--quiet", "--hard", f"origin/{remote.branch}")
    change(remote.writer)
    git(remote.writer, "add", "--all")
    git(remote.writer, "commit", "--quiet", "-m", message)
    git(remote.writer, "push", "--quiet", "origin", f"HEAD:{remote.branch}")
    return remote.head()


def export(remote: GitRemote, cache: Path, dest: Path, ref: str = "main") -> Path:
    mirror = Mirror.open(remote.url, cache)
    mirror.fetch()
    mirror.export_tree(ref, dest)
    return dest


def write(path: Path, data: bytes, executable: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o755 if executable else 0o644)


def link(path: Path, target: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)


def test_the_export_is_the_commits_tree_whatever_gitattributes_say(
    app_remote: GitRemote, cache_dir: Path, tmp_path: Path
) -> None:
    def change(work: Path) -> None:
        attributes = b"secret.txt export-ignore\nVERSION export-subst\nunix.txt text eol=crlf\n"
        write(work / ".gitattributes", attributes)
        write(work / "secret.txt", b"kept in the build\n")
        write(work / "VERSION", b"$Format:%H$\n")
        write(work / "unix.txt", b"stored\nwith LF\n")
        write(work / "data.bin", BINARY)
        write(work / "bin" / "entrypoint.sh", b"#!/bin/sh\nexec app\n", executable=True)
        link(work / "docs" / "readme", "../README.md")
        link(work / "current", "bin")
        link(work / "dangling", "not-there-yet")

    commit_in_writer(app_remote, change)
    dest = export(app_remote, cache_dir, tmp_path / "export")

    assert (dest / "secret.txt").read_bytes() == b"kept in the build\n"  # export-ignore does not apply
    assert (dest / "VERSION").read_bytes() == b"$Format:%H$\n"  # nor does export-subst
    assert (dest / "unix.txt").read_bytes() == b"stored\nwith LF\n"  # nor does an eol conversion
    assert (dest / "data.bin").read_bytes() == BINARY
    assert (dest / "README.md").read_bytes() == b"# hello\n"
    assert os.access(dest / "bin" / "entrypoint.sh", os.X_OK)
    assert not os.access(dest / "README.md", os.X_OK)
    assert [os.readlink(dest / name) for name in ("docs/readme", "current", "dangling")] == [
        "../README.md",
        "bin",
        "not-there-yet",
    ]
    assert (dest / "docs" / "readme").read_bytes() == b"# hello\n"
    exported = sorted(str(path.relative_to(dest)) for path in dest.rglob("*") if not path.is_dir() or path.is_symlink())
    listed = sorted(app_remote.git("ls-tree", "-r", "--name-only", "main").split())
    assert exported == listed  # nothing more, nothing less


@pytest.mark.parametrize(
    ("links", "culprit", "target"),
    [
        ({"etc": "/etc/passwd"}, "etc", "/etc/passwd"),
        ({"charts/hello/escape": "../../../outside"}, "charts/hello/escape", "../../../outside"),
        # Each link alone stays inside, but through "d/up" the second one leads out of the tree.
        ({"d/up": "..", "e/escape": "../d/up/.."}, "e/escape", "../d/up/.."),
    ],
    ids=["absolute", "climbing", "through-another-link"],
)
def test_a_symlink_out_of_the_tree_is_one_clear_line(
    app_remote: GitRemote, cache_dir: Path, tmp_path: Path, links: dict[str, str], culprit: str, target: str
) -> None:
    def change(work: Path) -> None:
        for path, to in links.items():
            link(work / path, to)

    commit_in_writer(app_remote, change)

    with pytest.raises(InputError) as refused:
        export(app_remote, cache_dir, tmp_path / "export")

    assert str(refused.value).startswith(f"{culprit} in commit {app_remote.head()} of {app_remote.url} ")
    assert f"is a symlink to {target!r}, outside the repository; make it a relative link" in str(refused.value)


def test_a_submodule_is_one_clear_line(app_remote: GitRemote, cache_dir: Path, tmp_path: Path) -> None:
    def change(work: Path) -> None:
        (work / "vendor" / "lib").mkdir(parents=True)
        git(work / "vendor" / "lib", "init", "--quiet")
        git(work / "vendor" / "lib", "commit", "--quiet", "--allow-empty", "-m", "lib")  # added as a gitlink

    commit_in_writer(app_remote, change)

    with pytest.raises(InputError, match=r"vendor/lib in commit .* is a git submodule.*\(git rm vendor/lib\)"):
        export(app_remote, cache_dir, tmp_path / "export")


def test_an_export_into_a_directory_with_files_is_refused(
    app_remote: GitRemote, cache_dir: Path, tmp_path: Path
) -> None:
    write(tmp_path / "export" / "README.md", b"stale\n")

    with pytest.raises(InputError, match="is not empty"):
        export(app_remote, cache_dir, tmp_path / "export")

    assert (tmp_path / "export" / "README.md").read_bytes() == b"stale\n"


def test_the_export_starts_no_process_per_file(
    app_remote: GitRemote, cache_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    def change(work: Path) -> None:
        for index in range(200):
            write(work / "src" / f"module{index // 20}" / f"file{index}.txt", f"{index}\n".encode())

    commit_in_writer(app_remote, change)
    mirror = Mirror.open(app_remote.url, cache_dir)
    mirror.fetch()
    started: list[list[str]] = []
    popen = git_cmd.safer_popen

    def counting_popen(command, *args, **kwargs):
        started.append(list(command))
        return popen(command, *args, **kwargs)

    monkeypatch.setattr(git_cmd, "safer_popen", counting_popen)
    mirror.export_tree("main", tmp_path / "export")

    assert len(list((tmp_path / "export" / "src").rglob("*.txt"))) == 200
    assert len(started) <= 2, started  # at most git's persistent cat-file --batch and --batch-check
