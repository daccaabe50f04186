"""Release notes: the commits since the previous release, in Markdown, grouped by Conventional Commit type.

A pure function of its arguments, so a re-run of release-prod writes byte-identical notes and the idempotency check
of a release can compare them if it wants to.

Design choice: promo's own bookkeeping commits are left out. The empty build commits of a manual publish-dev
(``build: publish-dev on main (manual run)``) and the version bumps after a release (``chore: bump chart version
...``) change no code, so listing them would only bury the changes a reader looks for.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from promo.gitops.mirror import LogEntry, redact_url

BREAKING = "Breaking changes"
OTHER = "Other changes"
SECTIONS: dict[str, str] = {
    "feat": "Features",
    "fix": "Bug fixes",
    "perf": "Performance",
    "refactor": "Refactoring",
    "docs": "Documentation",
    "test": "Tests",
    "build": "Build and CI",
    "ci": "Build and CI",
    "chore": "Chores",
}
ORDER = (BREAKING, *dict.fromkeys(SECTIONS.values()), OTHER)

_CONVENTIONAL = re.compile(r"^(?P<type>[A-Za-z]+)(?:\((?P<scope>[^()]*)\))?(?P<breaking>!)?:\s*(?P<text>\S.*)$")
SHORT_SHA_LENGTH = 7
_PROMO_COMMITS = re.compile(r"^build: publish-dev\b.*\(manual run\)$|^chore: bump chart version\b")


def render_release_notes(
    version: str, commits: Sequence[LogEntry], *, previous_tag: str | None, repository_url: str | None = None
) -> str:
    """Markdown notes for ``version`` from ``commits`` (newest first, as ``Mirror.log`` gives them).

    Each change is ``- subject (short sha, author)``, its SHA linked to ``repository_url``'s commit page when given.
    """
    sections: dict[str, list[str]] = {}
    base_url = redact_url(repository_url).rstrip("/").removesuffix(".git") if repository_url else None
    for commit in commits:
        if _PROMO_COMMITS.match(commit.subject):
            continue
        section, text = _classify(commit.subject)
        sha = commit.sha[:SHORT_SHA_LENGTH]
        reference = f"[{sha}]({base_url}/commit/{commit.sha})" if base_url else sha
        sections.setdefault(section, []).append(f"- {text} ({reference}, {commit.author})")

    lines = [f"## {version}", "", f"Changes since {previous_tag}." if previous_tag else "First release."]
    for section in ORDER:
        if section in sections:
            lines += ["", f"### {section}", "", *sections[section]]
    if not sections:
        lines += ["", "No changes besides the version."]
    return "\n".join(lines) + "\n"


def _classify(subject: str) -> tuple[str, str]:
    """The section a commit subject belongs in, and the text to show (scope in bold, type dropped)."""
    match = _CONVENTIONAL.match(subject.strip())
    if match is None:
        return OTHER, subject.strip()
    kind = match["type"].lower()
    text = f"**{match['scope'].strip()}:** {match['text']}" if match["scope"] else match["text"]
    if match["breaking"]:
        return BREAKING, text
    return (SECTIONS[kind], text) if kind in SECTIONS else (OTHER, subject.strip())
