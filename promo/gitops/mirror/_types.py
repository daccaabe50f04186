"""The values a mirror hands out and the names it takes: what its reads return, and the checks that keep a ref name,
a record kind or an identity from becoming something else on git's command line or in a git object."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime

from git import Actor

from promo.errors import InputError

DEFAULT_AUTHOR = Actor("promo", "promo@localhost")

_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s]*@")
_BAD_REF_NAME = re.compile(r"[\s\x00-\x1f\x7f~^:?*\[\\]|\.\.|@\{|//|/\.|\.lock(/|$)")


def redact_url(url: str) -> str:
    """``url`` without userinfo (``user:token@``): the only form of a URL that may appear in messages and logs."""
    return _USERINFO.sub(r"\1", url)


@dataclass(frozen=True)
class TreeEntry:
    name: str
    is_dir: bool


@dataclass(frozen=True)
class LogEntry:
    sha: str
    subject: str
    author: str


@dataclass(frozen=True)
class CommitRecord:
    """One commit as history shows it: ``body`` is the message after the subject (trailers included)."""

    sha: str
    committed_at: datetime  # the committer date, in UTC: when the change landed on the branch
    subject: str
    body: str


@dataclass(frozen=True)
class UpdateResult:
    """What ``update_branch`` did: ``commit`` is None when the edit found nothing to change."""

    commit: str | None
    attempts: int
    changed_paths: tuple[str, ...]


WriteLock = Callable[[], AbstractContextManager[object]]
"""Makes the context held around one fetch-edit-push: serialises the writers of one remote across caches and hosts."""


def check_branch_name(branch: str) -> None:
    """Branch names become git arguments: refuse option-like and malformed ones before git sees them."""
    check_ref_name(branch, "branch", "main or release-1.2")


def check_tag_name(tag: str) -> None:
    """Tag names become git arguments too: the same rules as branches (``git check-ref-format``)."""
    check_ref_name(tag, "tag", "v1.2.3")


def check_ref_name(name: str, what: str, example: str) -> None:
    if not name or name.startswith(("-", "/", ".")) or name.endswith(("/", ".")) or _BAD_REF_NAME.search(name):
        raise InputError(f"{name!r} is not a valid git {what} name", f"use a name such as {example}")


def checked_kind(kind: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9-]*", kind):
        raise InputError(f"{kind!r} is not a record kind", "use a lowercase word such as pulls")
    return kind


def one_line(text: str) -> str:
    """``text`` fit for an identity line of a git object: no angle brackets or control characters."""
    return " ".join(re.sub(r"[<>\x00-\x1f]", "", text).split())
