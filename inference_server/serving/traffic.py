"""Traffic policy between the versions of one model: weighted split, sticky users, shadow, rollback.

Why weighted rendezvous hashing: a user id hashed against every version gives each version an
exponential "race time" scaled by its weight; the fastest version wins. The winner is deterministic per
user (sticky), a version wins with probability weight / sum(weights), and changing one weight moves only
the users whose winner changes (the minimum possible), unlike `hash(user) % n` bucketing. Anonymous
requests have no key and are drawn at random with the same weights.

A split is immutable; every change builds a new one and replaces the router's reference in one
assignment, so a concurrent `route()` sees the old split or the new one, never a mixture.
"""
from __future__ import annotations

import hashlib
import math
import random
import threading
from dataclasses import dataclass, field
from typing import Collection, Iterable, Mapping, Optional

__all__ = ["Split", "TrafficError", "TrafficRouter"]

_TWO_64 = float(1 << 64)


class TrafficError(ValueError):
    """A traffic change that cannot be applied (bad weights, nothing left to serve, no history)."""


@dataclass(frozen=True)
class Split:
    """Normalised live weights (sum 1 over versions with weight > 0) plus shadow versions."""

    weights: Mapping[str, float]
    shadow: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, weights: Mapping[str, float], shadow: Iterable[str] = ()) -> "Split":
        """Validate and normalise: non-negative finite numbers, at least one positive."""
        if not isinstance(weights, Mapping) or not weights:
            raise TrafficError("weights must be a non-empty mapping of version -> weight")
        clean: dict[str, float] = {}
        for version, weight in weights.items():
            if not isinstance(version, str) or not version:
                raise TrafficError(f"version {version!r} must be a non-empty string")
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
                raise TrafficError(f"weights.{version}: must be a finite number, got {weight!r}")
            if weight < 0:
                raise TrafficError(f"weights.{version}: must be >= 0, got {weight!r}")
            clean[version] = float(weight)
        total = sum(clean.values())
        if total <= 0:
            raise TrafficError("weights: at least one version needs a weight > 0")
        normalised = {v: w / total for v, w in sorted(clean.items(), key=lambda kv: _version_key(kv[0])) if w > 0}
        shadow_set = frozenset(str(s) for s in shadow)
        overlap = shadow_set & normalised.keys()
        if overlap:
            raise TrafficError(f"shadow: version(s) {sorted(overlap)} also take live traffic")
        return cls(weights=normalised, shadow=shadow_set)

    def weight(self, version: str) -> float:
        return self.weights.get(version, 0.0)

    def is_single(self) -> bool:
        """All live traffic on one version (such a split counts as stable)."""
        return len(self.weights) == 1

    def as_percent(self) -> dict[str, float]:
        return {v: round(w * 100.0, 6) for v, w in self.weights.items()}

    def as_json(self) -> dict:
        """The split as stored in a shared split document (see lifecycle/shared_split.py)."""
        return {"weights": dict(self.weights), "shadow": sorted(self.shadow, key=_version_key)}

    @classmethod
    def from_json(cls, data: Mapping) -> "Split":
        if not isinstance(data, Mapping):
            raise TrafficError(f"a split must be an object, got {type(data).__name__}")
        return cls.of(data.get("weights") or {}, data.get("shadow") or ())

    def same_as(self, other: "Split") -> bool:
        if self.shadow != other.shadow or self.weights.keys() != other.weights.keys():
            return False
        return all(abs(self.weights[v] - other.weights[v]) < 1e-12 for v in self.weights)


def _version_key(version: str) -> tuple:
    """Numeric versions sort numerically, others lexically after them."""
    return (0, int(version), "") if version.isdigit() else (1, 0, version)


def _uniform(key: str) -> float:
    """A deterministic uniform draw in (0, 1) from a string."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / _TWO_64


class TrafficRouter:
    """Routes requests of one model to its versions and keeps the history needed for rollback.

    `stable` splits are the ones a rollback returns to: the initial split, a promote, and any split
    that sends all live traffic to one version. Rollback restores the most recent stable split that
    differs from the current one.
    """

    def __init__(self, model: str, initial: Split, *, history_size: int = 16,
                 rng: Optional[random.Random] = None) -> None:
        if history_size < 1:
            raise ValueError("history_size must be >= 1")
        self.model = model
        self._split = initial
        self._stable: list[Split] = [initial]
        self._history_size = history_size
        self._rng = rng or random.Random()
        self._lock = threading.Lock()  # serialises writers; readers take the reference lock-free

    # ---- reading -------------------------------------------------------------------------------
    @property
    def split(self) -> Split:
        return self._split

    @property
    def stable(self) -> Split:
        return self._stable[-1]

    def route(self, user_id: Optional[str], ready: Optional[Collection[str]] = None) -> Optional[str]:
        """The version that serves this request, or None when no weighted version is ready.

        Versions that are not in `ready` are skipped and the rest keep their relative weights; when
        none of the live split is ready, the stable split is tried (a failed canary falls back).
        """
        split = self._split
        choice = self._choose(split.weights, user_id, ready)
        if choice is None and split is not self._stable[-1]:
            choice = self._choose(self._stable[-1].weights, user_id, ready)
        return choice

    def shadow_targets(self, ready: Optional[Collection[str]] = None) -> list[str]:
        shadow = self._split.shadow
        if not shadow:
            return []
        return sorted((v for v in shadow if ready is None or v in ready), key=_version_key)

    def _choose(self, weights: Mapping[str, float], user_id: Optional[str],
                ready: Optional[Collection[str]]) -> Optional[str]:
        if ready is None:
            candidates = weights
        else:
            candidates = {v: w for v, w in weights.items() if v in ready}
        if not candidates:
            return None
        if len(candidates) == 1:
            return next(iter(candidates))
        if user_id is None:
            versions = list(candidates)
            return self._rng.choices(versions, weights=[candidates[v] for v in versions], k=1)[0]
        best, best_score = None, -1.0
        prefix = f"{self.model}\x00{user_id}\x00"
        for version, weight in candidates.items():
            # Weighted rendezvous: the smallest Exp(weight) race time wins, i.e. the largest w/-ln(u).
            score = weight / -math.log(_uniform(prefix + version))
            if score > best_score:
                best, best_score = version, score
        return best

    # ---- changing ------------------------------------------------------------------------------
    def set_split(self, split: Split, *, stable: Optional[bool] = None) -> Split:
        """Replace the split atomically; `stable` defaults to "all live traffic on one version"."""
        with self._lock:
            self._install(split, split.is_single() if stable is None else stable)
            return split

    def reset(self, split: Split) -> None:
        """Start over from `split` as the only stable split (the configured split at start-up)."""
        with self._lock:
            self._split = split
            self._stable = [split]

    def snapshot(self) -> tuple[Split, tuple[Split, ...]]:
        """The current split and the stable history (oldest first), for sharing with other replicas."""
        with self._lock:
            return self._split, tuple(self._stable)

    def restore(self, split: Split, stable: Iterable[Split]) -> None:
        """Adopt a split and stable history made elsewhere (another replica, an operator)."""
        history = list(stable)[-self._history_size:] or [split]
        with self._lock:
            self._split = split
            self._stable = history

    def set_weights(self, weights: Mapping[str, float], shadow: Iterable[str] = ()) -> Split:
        return self.set_split(Split.of(weights, shadow))

    def promote(self, version: str) -> Split:
        """All live traffic to `version`; shadows other than it are kept. The result is stable."""
        with self._lock:
            split = Split.of({version: 1.0}, self._split.shadow - {version})
            self._install(split, True)
            return split

    def rollback(self) -> Split:
        """Restore the most recent stable split that differs from the current one."""
        with self._lock:
            current = self._split
            if current.same_as(self._stable[-1]):
                if len(self._stable) < 2:
                    raise TrafficError("no previous stable split to roll back to")
                self._stable.pop()
            target = self._stable[-1]
            self._split = target
            return target

    def drain(self, version: str) -> tuple[Split, bool]:
        """Set `version`'s weight to 0 and re-normalise the rest. Returns (split, changed).

        Idempotent: draining a version without weight changes nothing. When the version holds all live
        traffic, the most recent stable split without it is restored; with none, it is an error (there
        would be nothing left to serve).
        """
        with self._lock:
            current = self._split
            if current.weight(version) == 0.0:
                return current, False
            rest = {v: w for v, w in current.weights.items() if v != version}
            if rest:
                split = Split.of(rest, current.shadow)
            else:
                fallback = next((s for s in reversed(self._stable) if s.weight(version) == 0.0), None)
                if fallback is None:
                    raise TrafficError(f"version {version} serves all traffic and no stable split without it exists")
                split = fallback
            self._install(split, split.is_single())
            return split, True

    def forget(self, version: str) -> None:
        """Drop an unloaded version from the stable history (it can no longer be rolled back to)."""
        with self._lock:
            kept = [s for s in self._stable if s.weight(version) == 0.0]
            if kept:
                self._stable = kept

    def _install(self, split: Split, stable: bool) -> None:
        self._split = split
        if stable and not split.same_as(self._stable[-1]):
            self._stable.append(split)
            del self._stable[:-self._history_size]
