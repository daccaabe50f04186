"""Release notes: grouping by Conventional Commit type, promo's own commits left out, deterministic output."""

from __future__ import annotations

from promo.gitops.mirror import LogEntry
from promo.release.notes import render_release_notes


def entry(index: int, subject: str, author: str = "alice") -> LogEntry:
    return LogEntry(f"{index:x}" * 40, subject, author)


COMMITS = [
    entry(1, "feat(api)!: drop the v1 endpoints", "bob"),
    entry(2, "build: publish-dev on main (manual run)", "promo"),
    entry(3, "fix: a crash on empty input"),
    entry(4, "chore: bump chart version to 1.2.1", "promo"),
    entry(5, "feat(ui): dark mode"),
    entry(6, "Update README"),
    entry(7, "docs: how to release"),
    entry(8, "ci: cache the venv"),
    entry(9, "build(deps): bump httpx"),
    entry(10, "perf: faster diff"),
    entry(11, "refactor!: rename the settings"),
    entry(12, "style: reformat"),
    entry(13, "Fix(parser): case-insensitive types"),
    entry(14, "test: cover the gate"),
    entry(15, "chore: tidy"),
]


def test_groups_by_type_breaking_first_and_leaves_out_promo_commits() -> None:
    notes = render_release_notes("1.2.0", COMMITS, previous_tag="v1.1.0")

    assert notes == """\
## 1.2.0

Changes since v1.1.0.

### Breaking changes

- **api:** drop the v1 endpoints (1111111, bob)
- rename the settings (bbbbbbb, alice)

### Features

- **ui:** dark mode (5555555, alice)

### Bug fixes

- a crash on empty input (3333333, alice)
- **parser:** case-insensitive types (ddddddd, alice)

### Performance

- faster diff (aaaaaaa, alice)

### Documentation

- how to release (7777777, alice)

### Tests

- cover the gate (eeeeeee, alice)

### Build and CI

- cache the venv (8888888, alice)
- **deps:** bump httpx (9999999, alice)

### Chores

- tidy (fffffff, alice)

### Other changes

- Update README (6666666, alice)
- style: reformat (ccccccc, alice)
"""
    assert render_release_notes("1.2.0", COMMITS, previous_tag="v1.1.0") == notes  # deterministic


def test_first_release_links_commits_and_never_shows_credentials() -> None:
    notes = render_release_notes(
        "0.1.0",
        [LogEntry("0123456" + "9" * 33, "feat: hello", "carol")],
        previous_tag=None,
        repository_url="https://x-access-token:s3cr3t@github.com/acme/hello.git",
    )
    assert notes.splitlines()[:3] == ["## 0.1.0", "", "First release."]
    assert (
        "- hello ([0123456](https://github.com/acme/hello/commit/0123456999999999999999999999999999999999), carol)"
        in notes
    )
    assert "s3cr3t" not in notes


def test_only_promo_commits_means_no_changes() -> None:
    notes = render_release_notes("1.0.1", [COMMITS[1], COMMITS[3]], previous_tag="v1.0.0")
    assert notes == "## 1.0.1\n\nChanges since v1.0.0.\n\nNo changes besides the version.\n"
