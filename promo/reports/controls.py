"""The operator controls as reports show them: each environment's freeze, the app's rejected versions, and any
record of either that promo cannot prove it wrote (shown as untrusted, never counted)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from promo.clients import gitops_repo
from promo.config import PromoConfig
from promo.gitops import controls
from promo.gitops.controls import ControlEntry, Freeze, Rejection
from promo.windows import utc_now


@dataclass(frozen=True)
class OperatorControls:
    freezes: Mapping[str, Freeze] = field(default_factory=dict)  # env -> its freeze now
    rejections: Mapping[str, Rejection] = field(default_factory=dict)  # version -> its rejection
    untrusted: tuple[ControlEntry, ...] = ()

    def frozen(self, env: str) -> str | None:
        freeze = self.freezes.get(env)
        return freeze.line() if freeze is not None else None

    def rejected(self, version: str | None) -> str | None:
        rejection = self.rejections.get(version or "")
        return rejection.line() if rejection is not None else None

    def notes(self, envs: Iterable[str], versions: Iterable[str] = ()) -> list[str]:
        """The lines under a report's table: the freezes of ``envs``, the rejections of ``versions``, and every
        untrusted entry (of those environments, or of the app)."""
        envs, versions = list(envs), set(versions)
        lines = [f"frozen: {self.freezes[env].line()}" for env in envs if env in self.freezes]
        lines += [f"rejected: {line.line()}" for version, line in self.rejections.items() if version in versions]
        lines += [
            f"ignored, {entry.line()}"
            for entry in self.untrusted
            if entry.kind == controls.REJECTIONS or entry.subject in envs
        ]
        return lines

    def untrusted_lines(self, env: str, version: str | None) -> tuple[str, ...]:
        """The untrusted entries about ``env``'s freeze or about ``version``, the one it runs."""
        return tuple(
            entry.line()
            for entry in self.untrusted
            if (entry.kind == controls.FREEZES and entry.subject == env)
            or (entry.kind == controls.REJECTIONS and version is not None and entry.version == version)
        )

    def as_json(self) -> dict[str, object]:
        return {
            "freezes": {env: freeze.line() for env, freeze in self.freezes.items()},
            "rejected": {version: rejection.line() for version, rejection in self.rejections.items()},
            "untrusted": [entry.line() for entry in self.untrusted],
        }


def operator_controls(config: PromoConfig) -> OperatorControls:
    """The freezes of every environment and the rejections of the app, as the GitOps remote has them now."""
    mirror = gitops_repo(config).mirror
    freezes = controls.read_controls(mirror, controls.FREEZES)
    rejections = controls.read_controls(mirror, controls.REJECTIONS, config.app)
    return OperatorControls(
        controls.current_freezes(freezes, utc_now()),
        controls.current_rejections(rejections),
        tuple(entry for entry in [*freezes, *rejections] if not entry.trusted),
    )
