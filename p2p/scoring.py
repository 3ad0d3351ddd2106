"""Peer scores and bans: a pure ledger over an injected monotonic clock, no I/O."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from p2p.config import ScoringConfig
from p2p.identity import PeerId

Penalizer = Callable[[PeerId, float, str], None]
"""`P2PService.penalize` as its parts see it: (peer, points, reason)."""


@dataclass(frozen=True, slots=True)
class PenaltyOutcome:
    score: float
    """The peer's score after the penalty (0 again once it is banned)."""
    banned: bool
    """True when this penalty crossed the threshold and started a ban."""


@dataclass(slots=True)
class _Standing:
    score: float
    at: float
    """Clock reading when `score` was last written; recovery counts from here."""


class PeerScores:
    """Scores fall with penalties, recover by whole points towards 0, and a peer at or below the
    threshold is banned for `ban_seconds` with its score reset, so it returns with a clean slate.
    """

    def __init__(self, config: ScoringConfig, clock: Callable[[], float]) -> None:
        self._config = config
        self._clock = clock
        self._standing: dict[PeerId, _Standing] = {}
        self._banned_until: dict[PeerId, float] = {}
        self.penalties = 0
        self.bans = 0

    def score(self, peer_id: PeerId) -> float:
        standing = self._standing.get(peer_id)
        return 0.0 if standing is None else self._recovered(standing)[0]

    def _recovered(self, standing: _Standing) -> tuple[float, float]:
        """(score, its time) after recovery in whole points, so a burst of penalties within a
        second adds up exactly; the fraction of a point earned so far is kept, not lost."""
        rate = self._config.recovery_per_second
        if rate == 0:
            return standing.score, standing.at
        points = math.floor((self._clock() - standing.at) * rate)
        return min(0.0, standing.score + points), standing.at + points / rate

    def penalize(self, peer_id: PeerId, amount: float) -> PenaltyOutcome:
        if amount < 0:
            raise ValueError(f"a penalty is >= 0 points, got {amount}")
        self.penalties += 1
        if self.is_banned(peer_id):
            # Stragglers sent before the ban took effect: the ban already answers for them.
            return PenaltyOutcome(score=0.0, banned=False)
        standing = self._standing.get(peer_id)
        current, at = (0.0, self._clock()) if standing is None else self._recovered(standing)
        score = current - amount
        if score <= self._config.ban_threshold:
            self.ban(peer_id)
            return PenaltyOutcome(score=0.0, banned=True)
        if score >= 0.0:
            self._standing.pop(peer_id, None)
        else:
            self._standing[peer_id] = _Standing(score, at)
        return PenaltyOutcome(score=score, banned=False)

    def ban(self, peer_id: PeerId, seconds: float | None = None) -> None:
        """Ban now, whatever the score (e.g. a peer on another network id)."""
        self.bans += 1
        duration = self._config.ban_seconds if seconds is None else seconds
        self._banned_until[peer_id] = self._clock() + duration
        self._standing.pop(peer_id, None)

    def is_banned(self, peer_id: PeerId) -> bool:
        until = self._banned_until.get(peer_id)
        return until is not None and self._clock() < until

    def ban_remaining(self, peer_id: PeerId) -> float:
        until = self._banned_until.get(peer_id)
        return 0.0 if until is None else max(0.0, until - self._clock())

    def expire(self) -> list[PeerId]:
        """Forget finished bans and fully recovered scores; return the peers just unbanned."""
        now = self._clock()
        unbanned = [peer for peer, until in self._banned_until.items() if now >= until]
        for peer in unbanned:
            del self._banned_until[peer]
        recovered = [peer for peer in self._standing if self.score(peer) >= 0.0]
        for peer in recovered:
            del self._standing[peer]
        return unbanned

    def banned(self) -> list[PeerId]:
        now = self._clock()
        return [peer for peer, until in self._banned_until.items() if now < until]
