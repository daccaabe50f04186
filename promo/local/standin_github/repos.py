"""The git side of the GitHub stand-in: branches, test merges and merges in the sandbox's bare repositories.

Merges are made with plumbing (``merge-tree --write-tree``, ``commit-tree``) and land with a compare-and-swap
``update-ref``, so a base branch that moved meanwhile is refused as GitHub refuses it, and no hook runs for them:
the pre-receive hook installed here refuses direct pushes that touch the protected branch's guarded paths, which
is what makes a pull request the only way in.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

_ZERO = "0" * 40
_HOOK_MARK = "# written by promo's GitHub stand-in"


class GitFailed(Exception):
    """A git command of the stand-in failed; the handler answers it as GitHub would (422, 405 or 409)."""


@dataclass(frozen=True)
class BareRepo:
    path: Path

    def sha(self, ref: str) -> str | None:
        """The commit (or tag object, for an annotated tag) ``ref`` names; None when there is none."""
        out = self._git("rev-parse", "--verify", "--quiet", ref, check=False).strip()
        return out or None

    def commit_of(self, ref: str) -> str | None:
        return self.sha(f"{ref}^{{commit}}")

    def object_type(self, sha: str) -> str:
        return self._git("cat-file", "-t", sha).strip()

    def tag_object(self, sha: str) -> tuple[str, str, str, str]:
        """An annotated tag's (name, message, target, target type)."""
        header, _, message = self._git("cat-file", "tag", sha).partition("\n\n")
        fields = dict(line.split(" ", 1) for line in header.splitlines() if " " in line)
        return fields["tag"], message, fields["object"], fields["type"]

    def tags(self) -> list[tuple[str, str]]:
        """(name, commit) of every tag, newest ref name first."""
        out = self._git("for-each-ref", "--sort=-refname", "--format=%(refname:strip=2) %(objectname)", "refs/tags")
        return [
            (name, self.commit_of(f"refs/tags/{name}") or sha)
            for name, sha in (line.split() for line in out.splitlines())
        ]

    def create_ref(self, ref: str, sha: str) -> None:
        """Create ``ref`` at ``sha``; GitFailed when it exists (the zero old value makes it create-only)."""
        self._git("update-ref", ref, sha, _ZERO)

    def move_ref(self, ref: str, new: str, old: str) -> None:
        """Compare-and-swap: GitFailed when ``ref`` is no longer at ``old``."""
        self._git("update-ref", ref, new, old)

    def delete_ref(self, ref: str, old: str) -> None:
        self._git("update-ref", "-d", ref, old)

    def test_merge(self, ours: str, theirs: str) -> str | None:
        """The tree merging ``theirs`` into ``ours`` would give, or None on conflicts."""
        result = self._run("merge-tree", "--write-tree", ours, theirs)
        return result.stdout.splitlines()[0] if result.returncode == 0 else None

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        return self._run("merge-base", "--is-ancestor", ancestor, descendant).returncode == 0

    def commit(self, tree: str, parents: list[str], message: str, author: str) -> str:
        """A commit of ``tree``; authored by ``author`` (a login), committed by GitHub, as a web merge is."""
        env = {
            "GIT_AUTHOR_NAME": author, "GIT_AUTHOR_EMAIL": f"{author}@users.noreply.sandbox",
            "GIT_COMMITTER_NAME": "GitHub", "GIT_COMMITTER_EMAIL": "noreply@github.com",
        }  # fmt: skip
        args = ["commit-tree", tree, *(arg for parent in parents for arg in ("-p", parent))]
        return self._git(*args, input=message, env=env).strip()

    def message(self, sha: str) -> str:
        return self._git("log", "-1", "--format=%B", sha)

    def protect(self, branch: str, paths: list[str]) -> None:
        """Install the pre-receive hook refusing pushes to ``branch`` that change ``paths`` (prefixes; none: any)."""
        patterns = " ".join(f"'{path.rstrip('/')}/'*" for path in paths) or "*"
        hook = f"""#!/bin/sh
{_HOOK_MARK}: {branch} is protected, a pull request is the way in (GitHub's GH006 refusal).
status=0
while read old new ref; do
  [ "$ref" = "refs/heads/{branch}" ] || continue
  if [ "$old" = "{_ZERO}" ] || [ "$new" = "{_ZERO}" ]; then
    echo "error: GH006: Protected branch update failed for $ref: it may not be created or deleted by a push."
    status=1; continue
  fi
  for changed in $(git diff --name-only "$old" "$new"); do
    case "$changed" in {patterns.replace(" ", "|")})
      echo "error: GH006: Protected branch update failed for $ref: $changed changes only through a pull request."
      status=1; break;;
    esac
  done
done
exit $status
"""
        target = self.path / "hooks" / "pre-receive"
        target.parent.mkdir(exist_ok=True)
        target.write_text(hook, encoding="utf-8")
        target.chmod(0o755)

    def _run(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "-C", str(self.path), *args], capture_output=True, text=True, input=input,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})},
        )  # fmt: skip

    def _git(self, *args: str, input: str | None = None, env: dict[str, str] | None = None, check: bool = True) -> str:
        result = self._run(*args, input=input, env=env)
        if check and result.returncode != 0:
            raise GitFailed(f"git {args[0]}: {(result.stderr or result.stdout).strip()}")
        return result.stdout
