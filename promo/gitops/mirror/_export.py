"""Exporting a commit's tree to a directory for a build: every file byte for byte, and nothing that could lead a
write, or the build, outside it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from stat import S_ISDIR, S_ISLNK

from git.objects.fun import tree_entries_from_data

from promo.errors import InputError, ToolError
from promo.gitops.mirror._cache import Cache

_GITLINK_MODE = 0o160000


def export_tree(cache: Cache, ref: str, dest: Path) -> None:
    """Not ``git archive``: its ``export-ignore`` and ``export-subst`` attributes would let ``.gitattributes`` change
    what is built from a commit. Objects are read through the cache's one ``cat-file --batch`` process, not one per
    file."""
    sha = cache.resolve(ref)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise InputError(f"{dest} is not empty, so an export there would mix in other files", "export elsewhere")
    links: list[tuple[str, str]] = []
    _export_entries(cache, sha, cache.repo.commit(sha).tree.binsha, dest, "", links)
    root = dest.resolve()
    for path, target in links:
        # Checked once the whole tree is written: a link can lead out through other links of the tree.
        if target.startswith("/") or not Path(os.path.realpath(dest / path)).is_relative_to(root):
            raise InputError(
                f"{path} in commit {sha} of {cache.display_url} is a symlink to {target!r}, outside the repository",
                "make it a relative link to a file inside the repository, or commit the file instead of the link",
            )


def _export_entries(
    cache: Cache, sha: str, tree: bytes, directory: Path, prefix: str, links: list[tuple[str, str]]
) -> None:
    """Write the entries of ``tree`` into ``directory``, recursively; symlinks made are appended to ``links``.

    Nothing is written through an existing path (``O_EXCL``, ``mkdir``), so no link can redirect a write.
    """
    odb = cache.repo.odb
    try:
        entries = tree_entries_from_data(odb.stream(tree).read())
    except ValueError as exc:  # GitPython refuses names such as "..", ".git" or "a/b" that git never writes
        raise ToolError(
            f"commit {sha} of {cache.display_url} has a malformed tree under {prefix or '/'}: {exc}",
            "repair the repository (git fsck); promo does not export trees that git itself would not check out",
        ) from None
    for blob, mode, name in entries:
        path, target = f"{prefix}{name}", directory / name
        if S_ISDIR(mode):
            target.mkdir()
            _export_entries(cache, sha, blob, target, f"{path}/", links)
        elif S_ISLNK(mode):
            link = os.fsdecode(odb.stream(blob).read())
            os.symlink(link, target)
            links.append((path, link))
        elif mode == _GITLINK_MODE:
            raise InputError(
                f"{path} in commit {sha} of {cache.display_url} is a git submodule, whose files promo does not "
                "fetch into the build",
                f"vendor its files into the repository, or remove the submodule (git rm {path})",
            )
        else:
            executable = mode & 0o111
            handle = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o777 if executable else 0o666)
            with open(handle, "wb") as out:
                shutil.copyfileobj(odb.stream(blob), out)
