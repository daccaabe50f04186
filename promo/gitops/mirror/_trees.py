"""Writing commits without a work tree: only the trees along the changed paths are built, spliced as bytes, and
stored as loose objects in-process, so a write costs the same in a 1-app and a 2,000-app GitOps repository."""

from __future__ import annotations

import time
from collections.abc import Mapping
from stat import S_ISDIR

from git import Actor

from promo.errors import InputError
from promo.gitops.mirror._cache import EXECUTABLE_MODE, FILE_MODE, Cache
from promo.gitops.mirror._types import one_line

_TREE_MODE = 0o040000


def commit_files(cache: Cache, parent: str, changes: Mapping[str, str], message: str, author: Actor) -> str:
    """A new commit on ``parent`` with ``changes`` (path -> text) written, not pushed; no changes: an empty one."""
    nested: dict = {}
    for path, text in changes.items():
        *dirs, name = _split_path(path)
        node = nested
        for part in dirs:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InputError(f"{path!r} goes through a file written in the same commit", "fix the paths")
        node[name] = text
    parent_sha = cache.resolve(parent)
    parent_tree = cache.repo.commit(parent_sha).tree.binsha
    tree = _write_tree(cache, parent_tree, nested) if nested else parent_tree
    identity = f"{one_line(author.name)} <{one_line(author.email)}> {int(time.time())} +0000"
    header = f"tree {tree.hex()}\nparent {parent_sha}\nauthor {identity}\ncommitter {identity}\n"
    return cache.store(b"commit", f"{header}\n{message}".encode()).hex()


def _write_tree(cache: Cache, tree: bytes | None, changes: dict) -> bytes:
    """Store a copy of ``tree`` with ``changes`` (name -> text, or name -> nested changes) applied; only the
    trees along changed paths are read and written, and each is spliced as bytes: the entry that changes is
    replaced, the others (2,000 apps' worth in a big cluster directory) are copied untouched, not parsed."""
    raw = cache.repo.odb.stream(tree).read() if tree is not None else b""
    for name, change in changes.items():
        start, end, mode, old = _tree_entry(raw, name.encode(), isinstance(change, dict))
        if isinstance(change, dict):
            if mode is not None and not S_ISDIR(mode):
                raise InputError(f"{name!r} is a file in {cache.display_url}, not a directory", "fix the path")
            mode, sha = _TREE_MODE, _write_tree(cache, old, change)
        else:
            if mode is not None and S_ISDIR(mode):
                raise InputError(f"{name!r} is a directory in {cache.display_url}, not a file", "fix the path")
            mode, sha = (mode if mode == EXECUTABLE_MODE else FILE_MODE), cache.store(b"blob", change.encode())
        raw = raw[:start] + b"%o %s\0%s" % (mode, name.encode(), sha) + raw[end:]
    return cache.store(b"tree", raw)


def _tree_entry(raw: bytes, name: bytes, is_dir: bool) -> tuple[int, int, int | None, bytes | None]:
    """Where entry ``name`` of tree data ``raw`` is: (start, end, mode, SHA). When absent, (start, start, None, None),
    start being where git's order puts a new ``name`` (bytes compared, a directory's name as if it ended in "/")."""
    key, last = name + b"/" if is_dir else name, name + b"/"  # an existing name sorts no later than ``last``
    position, insert_at = 0, None
    while position < len(raw):
        space = raw.index(b" ", position)
        nul = raw.index(b"\0", space)
        end = nul + 21
        mode, entry = int(raw[position:space], 8), raw[space + 1 : nul]
        if entry == name:
            return position, end, mode, raw[nul + 1 : end]
        entry_key = entry + b"/" if S_ISDIR(mode) else entry
        if insert_at is None and entry_key > key:
            insert_at = position
        if entry_key > last:
            break
        position = end
    insert_at = len(raw) if insert_at is None else insert_at
    return insert_at, insert_at, None, None


def _split_path(path: str) -> list[str]:
    parts = path.split("/")
    if any(part in ("", ".", "..", ".git") for part in parts):
        raise InputError(f"{path!r} is not a relative file path inside the repository", "use a/b/c.yaml")
    return parts
