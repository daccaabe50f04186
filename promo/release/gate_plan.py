"""What a gate shows, and so what an approval of it covers: the change the write after the gate carries out, or nothing.

A gate that suspends (under a deployment) ends its process, and the run starts again from the top when resumed. The
plan is kept with the run when the gate opens (flows/gate_plan.py), so the resumed run writes the version that was
shown, never the one its source runs by then; and the target must still run what was shown, or the approval is not
applied. Plain data here, with no Prefect import.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from promo.errors import ConflictError
from promo.gitops.repo import ManifestChange, Plan
from promo.release.readiness import Readiness


@dataclass(frozen=True)
class GatePlan:
    """A change as its gate shows it: ``version`` (with ``chart_digest``) from ``source`` into ``target``, over what
    ``plan.current`` says every cluster of ``target`` runs, with what the version lacks in ``source``.

    ``built_as`` is the chart the commits are counted from when it differs from ``version`` (a release shows its
    RC's); ``headline`` heads the page when this is no plain promotion (a rollback)."""

    source: str
    target: str
    version: str
    chart_digest: str
    plan: Plan
    readiness: Readiness = field(default_factory=Readiness)
    built_as: str | None = None
    headline: str | None = None
    going_back: bool = False  # a rollback: it goes back on purpose, so its gate asks no reason for it

    @property
    def title(self) -> str:
        return f"{self.version}: {self.source} -> {self.target}"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> GatePlan:
        """The plan ``to_json`` wrote; a ConflictError when the text is no such plan (nothing can be carried out)."""
        try:
            data = json.loads(text)
            plan, readiness = data.pop("plan"), data.pop("readiness")
            return cls(
                **data,
                plan=Plan(
                    changes=tuple(ManifestChange(**change) for change in plan["changes"]),
                    diff=plan["diff"],
                    already_current=plan["already_current"],
                    current=dict(plan["current"]),
                ),
                readiness=Readiness(tuple(readiness["missing"]), readiness["failed"]),
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            raise ConflictError(
                "what this run's gate showed cannot be read back from the run, so its approval cannot be carried out",
                "start the run again: its gate shows the change from what runs now",
            ) from None


def moved_since_gate(app: str, planned: GatePlan, now: Mapping[str, str], rerun: str) -> ConflictError | None:
    """``test of hello moved from A to B since the gate opened; run promote-test again`` when a cluster of the target
    no longer runs what the gate showed (``now`` is what each runs now); None when none moved. A cluster already at
    the planned version is no move: the write leaves it as the approval would."""
    shown = planned.plan.current
    moves = {
        cluster: (shown.get(cluster), version)
        for cluster, version in now.items()
        if version != planned.version and version != shown.get(cluster)
    }
    if not moves:
        return None
    several = len(now) > 1
    described = ", ".join(
        f"from {_named(was)} to {version or '<none>'}" + (f" in {cluster}" if several else "")
        for cluster, (was, version) in moves.items()
    )
    return ConflictError(f"{planned.target} of {app} moved {described} since the gate opened", f"run {rerun} again")


def _named(version: str | None) -> str:
    return "<not shown>" if version is None else version or "<none>"
