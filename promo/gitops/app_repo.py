"""The app repository's chart version: read it at a ref, and change it with one pushed commit."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from promo.registry.charts import CHART_FILE, parse_chart_yaml, set_chart_yaml_version
from promo.errors import ChartError
from promo.gitops.mirror import Mirror, Snapshot


@dataclass(frozen=True)
class ChartVersionChange:
    before: str
    after: str | None
    commit: str | None

    @property
    def changed(self) -> bool:
        return self.commit is not None


def chart_yaml_path(chart_path: str) -> str:
    return f"{chart_path.rstrip('/')}/{CHART_FILE}"


def read_chart_yaml(mirror: Mirror, ref: str, chart_path: str) -> dict:
    """Chart.yaml's metadata at ``ref``, without a checkout."""
    path = chart_yaml_path(chart_path)
    text = mirror.read_file(ref, path)
    if text is None:
        raise ChartError(f"{path} does not exist at {ref} in {mirror.display_url}", "check chart.path in promo.yaml")
    return parse_chart_yaml(text.encode(), path)


def change_chart_version(
    mirror: Mirror, branch: str, chart_path: str, next_version: Callable[[str], str | None], subject: str
) -> ChartVersionChange:
    """Set Chart.yaml's version to ``next_version(current)`` on ``branch`` (None: leave it), with rebase-retry.

    ``next_version`` is applied to the head of every push attempt, so a bump racing another push is computed
    from what the branch really holds then, and never applied twice.
    """
    path = chart_yaml_path(chart_path)
    seen: list[tuple[str, str | None]] = []

    def edit(head: Snapshot) -> dict[str, str] | None:
        text = head.read_file(path)
        if text is None:
            raise ChartError(f"{path} does not exist on {branch} of {mirror.display_url}", "check chart.path in promo.yaml")
        current = str(parse_chart_yaml(text.encode(), path)["version"])
        target = next_version(current)
        seen.append((current, target))
        if target is None or target == current:
            return None
        return {path: set_chart_yaml_version(text.encode(), target, path).decode()}

    result = mirror.update_branch(branch, edit, lambda _changes: f"{subject}\n")
    before, after = seen[-1]
    return ChartVersionChange(before=before, after=after if result.commit else None, commit=result.commit)
