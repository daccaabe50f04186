"""What an approver sees and what an approval must satisfy; the gate mechanics live in flows/gate.py,
finding and answering waiting gates in promo/release/gates.py."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from promo.errors import ApprovalRejected, InputError

if TYPE_CHECKING:  # `promo approve` imports this module: it need not load git to answer a gate
    from promo.release.changes import MoveBack


@dataclass(frozen=True)
class ApprovalRequest:
    app: str
    version: str
    source: str
    target: str
    diff: str
    approvers: tuple[str, ...] = ()
    chart_digest: str | None = None
    image: str | None = None
    commits: tuple[str, ...] = ()
    running: str | None = None
    current: Mapping[str, str] = field(default_factory=dict)  # cluster -> the version it runs now ("" = nothing yet)
    headline: str | None = None  # what the page says this is, when it is no plain promotion (a rollback and why)
    not_ready: tuple[str, ...] = ()  # what the version lacks in the source (promo.release.readiness): approving needs a reason
    failed_verification: bool = False  # it failed verification in the source: overriding that is an emergency
    moves_back: MoveBack | None = None  # it replaces a newer build in the target (promo.release.changes)
    # The target's change windows: an approval outside them waits for one, unless it gives an override reason.
    windows: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        return f"{self.app} {self.version}: {self.source} -> {self.target}"

    @property
    def needs_override(self) -> bool:
        """Approving needs a reason: the version is not ready in its source, or it replaces a newer build."""
        return bool(self.not_ready) or (self.moves_back is not None and self.moves_back.needs_reason)

    @property
    def summary(self) -> str:
        """One line: what moves where, and what it replaces there (first, when that is a newer build)."""
        line = f"{self.title} (now running in {self.target}: {self.running or 'nothing yet'})"
        return f"{self.moves_back.line}: {line}" if self.moves_back else line

    def description(self) -> str:
        """The markdown shown above the approval form in the Prefect UI, and on the run's page while it waits.

        On a laptop (1366x768) the UI gives it about 120 px above the form: one summary line (what moves, from and
        to, what runs there now, whether it is ready, whether it replaces a newer build) and the changed
        ``targetRevision`` lines come first, so they are read without scrolling. Then the digests, on lines of their
        own that wrap (see ``_wrappable``: a table cell cut them off), what is not ready, the whole diff, the table
        and the commits."""
        who = ", ".join(self.approvers) if self.approvers else "anyone"
        lines = [self._summary_line(), "", *self._changed_lines()]
        if self.chart_digest:
            lines += ["", f"chart digest `{_wrappable(self.chart_digest)}`"]
        if self.image:
            lines += ["", f"image `{_wrappable(self.image)}`"]
        lines += ["", *self._moves_back_section(), *self._not_ready_section(), *self._windows_section()]
        lines += ["```diff", self.diff.rstrip(), "```"]
        lines += [
            "",
            "| | |",
            "|---|---|",
            f"| app | `{self.app}` |",
            f"| version | `{self.version}` |",
            f"| from → to | `{self.source}` → `{self.target}` |",
            f"| now running in {self.target} | `{self.running or 'nothing yet'}` |",
            f"| may approve | {who} |",
        ]
        lines += self._clusters_table()
        if self.commits:
            lines += ["", f"### Commits since `{self.running}`" if self.running else "### Commits", "", *self.commits]
        return "\n".join(lines)

    def _summary_line(self) -> str:
        """``**Promote hello `0.2.0-rc.x` dev → test**, test runs `0.1.0-rc.y`; ready`` (and what is not, or the
        newer build it replaces, first)."""
        what = self.headline or f"Promote {self.app} `{self.version}` {self.source} → {self.target}"
        state = f"{self.target} runs `{self.running or 'nothing yet'}`"
        ready = f"**not ready**: {self.not_ready[0]}" if self.not_ready else "ready"
        back = f"**⚠️ {self.moves_back.line}**; " if self.moves_back else ""
        return f"{back}**{what}**, {state}; {ready}"

    def _changed_lines(self) -> list[str]:
        """The diff's ``targetRevision`` change, one short line for all clusters (``preprod: "" → "0.2.0-rc.x"``):
        a code block's padding alone would take what a laptop shows of the page. The whole diff follows below."""
        changes: dict[str, list[str]] = {}
        cluster = ""
        for line in self.diff.splitlines():
            if line.startswith("+++ "):
                cluster = PurePosixPath(line[4:]).parent.name
            elif line[:1] in "-+" and not line.startswith("---") and "targetRevision:" in line:
                changes.setdefault(cluster, []).append(line[1:].split("targetRevision:", 1)[1].strip())
        shown = [f"{name}: `{' → '.join(values)}`" for name, values in changes.items()]
        return [f"targetRevision {'; '.join(shown)}"] if shown else []

    def _moves_back_section(self) -> list[str]:
        """The page's very first line: replacing a newer build is easy to miss in a version string."""
        if self.moves_back is None:
            return []
        lines = [f"**⚠️ {self.moves_back.line}**", ""]  # in the summary line too, and said again in full here
        if self.moves_back.needs_reason and not self.not_ready:  # else the not-ready section says it
            lines += ["Approving needs an **override reason**; it is recorded in the GitOps commit.", ""]
        return lines

    def _not_ready_section(self) -> list[str]:
        """First on the page, so nobody approves without reading it."""
        if not self.not_ready:
            return []
        lines = ["### ⚠️ Not ready", ""]
        if self.failed_verification:
            lines += [
                f"**{self.version} FAILED verification in {self.source}.** Approving it anyway is an emergency "
                f"override: it ships a version that did not come up healthy in {self.source}.",
                "",
            ]
        lines += [f"- {line}" for line in self.not_ready]
        lines += ["", "Approving needs an **override reason**; it is recorded in the GitOps commit.", ""]
        return lines

    def _windows_section(self) -> list[str]:
        if not self.windows:
            return []
        return [
            f"Writes into {self.target} happen only in its change windows ({'; '.join(self.windows)}): an approval "
            "outside them waits for the next opening, unless it gives an **override reason** (recorded).",
            "",
        ]

    def _clusters_table(self) -> list[str]:
        """Each cluster of the target, from what it runs now to what it runs after an approval."""
        if not self.current:
            return []
        rows = [f"| {cluster} | `{now or 'nothing yet'}` | `{self.version}` |" for cluster, now in self.current.items()]
        return ["", f"### {self.target}, cluster by cluster", "", "| cluster | now | after |", "|---|---|---|", *rows]


def _wrappable(reference: str) -> str:
    """``repo:tag @sha256:79bf203f145b1efb f7b453d203f501b7 ...``: the UI's markdown breaks no word, so a digest in
    one piece runs off the page; in groups of 16, like a key fingerprint, it wraps and still reads as one.
    The exact, unbroken values are in the GitOps commit's trailers."""
    name, separator, digest = reference.rpartition("sha256:")
    if not separator:
        return reference
    groups = " ".join(digest[start : start + 16] for start in range(0, len(digest), 16))
    name = f"{name[:-1]} @" if name.endswith("@") else name  # the digest of an image reference on its own line
    return f"{name}sha256:{groups}"


@dataclass(frozen=True)
class Decision:
    approved: bool
    approver: str
    comment: str = ""
    via: str = field(default="gate", compare=False)
    override_reason: str = ""  # why a version moved that was not ready or replaced a newer build (needs_override)
    # A gate that is a pull request's review (approval: pull-request), still to come: the page it shows, as the pull
    # request's body. Such a decision is no approval (``approved`` is False): the write asks for the review.
    review_page: str = field(default="", compare=False)


def check_approver(request: ApprovalRequest, approver: str) -> None:
    """An empty allow-list means anyone may approve; otherwise the name must be on it."""
    if not approver.strip():
        raise InputError("an approval needs an approver name", "give one (--as NAME, or the form's approver field)")
    if request.approvers and approver not in request.approvers:
        raise InputError(
            f"{approver!r} may not approve promotions into {request.target}",
            f"ask one of: {', '.join(request.approvers)} (environments.{request.target}.approvers in promo.yaml)",
        )


def check_override(request: ApprovalRequest, decision: Decision) -> None:
    """Approving a version that is not ready or replaces a newer build needs a reason; rejecting it never does."""
    if not request.needs_override or not decision.approved or decision.override_reason.strip():
        return
    causes: list[str] = []
    waits: list[str] = []
    if request.moves_back is not None and request.moves_back.needs_reason:
        causes.append(f"{request.app} {request.version} into {request.target} {request.moves_back.line}")
        waits.append("promote a build at least as new")
    if request.not_ready:
        lacks = "; ".join(request.not_ready)
        causes.append(f"{request.app} {request.version} is not ready for {request.target}: {lacks}")
        waits.append("wait until it is")
    raise InputError(
        "; ".join(causes), f"{', or '.join(waits)}, or approve anyway with an override reason (--override-reason TEXT)"
    )


def enforce(request: ApprovalRequest, decision: Decision) -> Decision:
    """Turn a rejection into the error that fails the run, with the approver's reason."""
    if decision.approved:
        return decision
    reason = f": {decision.comment}" if decision.comment else ""
    raise ApprovalRejected(
        f"promotion of {request.app} {request.version} to {request.target} rejected by {decision.approver}{reason}",
        "fix what the approver asked for and start the promotion again",
    )
