"""What one look at one check of one cluster saw: healthy, not yet (pending), or failed for good."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class State(str, Enum):
    PENDING = "pending"  # not there yet: look again until the timeout
    HEALTHY = "healthy"
    FAILED = "failed"  # terminal: waiting longer cannot make it healthy


@dataclass(frozen=True)
class Observation:
    state: State
    reason: str  # one line: the condition and what was seen

    @classmethod
    def pending(cls, reason: str) -> Observation:
        return cls(State.PENDING, reason)

    @classmethod
    def healthy(cls, reason: str) -> Observation:
        return cls(State.HEALTHY, reason)

    @classmethod
    def failed(cls, reason: str) -> Observation:
        return cls(State.FAILED, reason)
