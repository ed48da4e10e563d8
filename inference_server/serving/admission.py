"""Admission control of one batch queue: admit work only when it can finish within its deadline.

Triton bounds a queue by size and delay and rejects requests whose timeout passes; CoDel bounds the
time spent queued. Both still let a queue fill with work that will finish too late under overload,
and the compute spent on it is thrown away (congestion collapse: more load, less goodput). Here the
decision uses the *measured service rate*:

- `WindowCostModel` fits the compute seconds of a collection window as ``a + b * texts`` online
  (exponentially weighted least squares over finished windows), so it follows the machine as it is
  now, contention included.
- `AdmissionController.admit` predicts when a new request's texts would start (the busy instances'
  expected finish times, then the texts ahead of it, window by window) and when they would finish;
  it admits only when that fits the request's remaining deadline (less a safety margin) and the
  predicted queue wait is under `max_queue_wait_ms` (the queue is bounded in time, not only in
  texts). Otherwise the request is shed at once with 503 `overloaded` and `Retry-After`.
- `AdmissionController.too_late` is asked when a window starts, and the worker asks the same before
  each batch of the window: texts whose time left (to `finish_by`) is shorter than a batch's expected
  compute are shed instead of computed for nobody. A request still queued when that time comes is
  shed then (the batcher's timer), not answered 504 at its deadline.

Until `min_windows` windows have been measured everything within the text bound is admitted.
"""

from __future__ import annotations

import heapq
import math
from typing import Optional

from inference_server.config import AdmissionConfig
from inference_server.errors import ApiError
# `reason` label of inference_admission_shed_total: text bound, predicted deadline miss, predicted
# queue wait over the time bound, remaining time shorter than the window about to start.
from inference_server.serving.metrics import SHED_REASONS

__all__ = ["AdmissionController", "Overloaded", "SHED_REASONS", "WindowCostModel"]



class Overloaded(ApiError):
    """503 `overloaded` with Retry-After; `reason` is one of `SHED_REASONS`."""

    def __init__(self, reason: str, message: str, retry_after: int) -> None:
        super().__init__(503, "overloaded", message, retry_after=retry_after)
        self.reason = reason


class WindowCostModel:
    """Compute seconds of a window of n texts, ``a + b * n``, fitted with exponential forgetting."""

    def __init__(self, decay: float) -> None:
        self.decay = decay
        self.windows = 0
        self._w = self._x = self._y = self._xx = self._xy = 0.0
        self.overhead = 0.0      # a: seconds per window
        self.per_text = 0.0      # b: seconds per text

    def observe(self, texts: int, seconds: float) -> None:
        d = self.decay
        self._w = d * self._w + 1.0
        self._x = d * self._x + texts
        self._y = d * self._y + seconds
        self._xx = d * self._xx + texts * texts
        self._xy = d * self._xy + texts * seconds
        self.windows += 1
        spread = self._w * self._xx - self._x * self._x
        # Sizes all (nearly) equal, e.g. full windows under load: a line through the origin.
        if spread <= 1e-9 * max(1.0, self._w * self._xx):
            self.overhead, self.per_text = 0.0, self._y / self._x if self._x else 0.0
            return
        slope = (self._w * self._xy - self._x * self._y) / spread
        if slope <= 0:
            self.overhead, self.per_text = 0.0, self._y / self._x if self._x else 0.0
            return
        intercept = (self._y - slope * self._x) / self._w
        if intercept < 0:
            intercept, slope = 0.0, self._xy / self._xx
        self.overhead, self.per_text = intercept, slope

    def cost(self, texts: int) -> float:
        return self.overhead + self.per_text * texts if texts > 0 else 0.0


class AdmissionController:
    """Admission and start-of-window decisions for one `DynamicBatcher` (event-loop thread only)."""

    def __init__(self, config: AdmissionConfig, *, instances: int, window_size: int, retry_after_s: int) -> None:
        self.config = config
        self.instances = instances
        self.window_size = window_size
        self.retry_after_s = retry_after_s
        self.model = WindowCostModel(config.cost_decay)
        self._busy: dict[int, float] = {}   # running window token -> expected end (loop time)
        self._next_token = 0

    def cost(self, texts: int) -> float:
        """Expected compute seconds of a window of `texts` (0 until calibrated: nothing to predict from)."""
        return self.model.cost(texts) if self.calibrated else 0.0

    @property
    def calibrated(self) -> bool:
        return self.config.enabled and self.model.windows >= self.config.min_windows

    # -- windows ---------------------------------------------------------------------------------
    # A window is dispatched when an instance is free, or (under load) one window ahead while all are
    # busy; `_busy` holds each dispatched window's expected end, chained behind the instance it waits for.
    def lanes(self, now: float) -> list[float]:
        """When each instance is expected to be free: the latest ends of the dispatched windows (a
        window waiting ahead ends after the one it waits for), `now` for idle instances."""
        ends = sorted(max(now, end) for end in self._busy.values())[-self.instances:]
        return ends + [now] * (self.instances - len(ends))

    def window_started(self, texts: int, now: float) -> int:
        """A window was dispatched at `now` (it starts when the first instance is free)."""
        token = self._next_token
        self._next_token += 1
        self._busy[token] = min(self.lanes(now)) + self.model.cost(texts)
        return token

    def window_began(self, token: int, texts: int, at: float) -> None:
        """The window's instance actually started it at `at`: re-predict its end from there."""
        if token in self._busy:
            self._busy[token] = at + self.model.cost(texts)

    def window_finished(self, token: int, texts: int, seconds: float) -> None:
        self._busy.pop(token, None)
        if texts > 0 and seconds > 0 and math.isfinite(seconds):
            self.model.observe(texts, seconds)

    # -- predictions -----------------------------------------------------------------------------
    def predicted_start(self, pending: int, now: float) -> float:
        """Loop time at which a text queued behind `pending` texts would start being computed."""
        free = self.lanes(now)
        heapq.heapify(free)
        left = pending
        while left > 0:
            size = min(self.window_size, left)
            at = heapq.heappop(free)
            heapq.heappush(free, at + self.cost(size))
            left -= size
        return free[0]

    def admit(self, texts: int, pending: int, now: float, deadline: float) -> Optional[float]:
        """Predicted queue wait (s) of a request of `texts` behind `pending` texts; raises `Overloaded`
        if it cannot finish by `deadline`. None while not calibrated (nothing to predict from)."""
        if not self.calibrated:
            return None
        start = self.predicted_start(pending, now)
        wait = start - now
        # Its own texts run in the window after those ahead (full windows under load).
        finish = start + self.cost(min(self.window_size, (pending % self.window_size) + texts))
        if texts > self.window_size:
            finish = start + self.cost(texts)
        budget = (deadline - now) * (1.0 - self.config.deadline_margin)
        max_wait = self.config.max_queue_wait_ms / 1000.0
        if finish - now > budget:
            raise self._shed("deadline", f"server overloaded: predicted queue wait {wait * 1000:.0f} ms + compute "
                             f"{(finish - start) * 1000:.0f} ms exceeds the request's remaining "
                             f"{(deadline - now) * 1000:.0f} ms", wait)
        if wait > max_wait:
            raise self._shed("queue_time", f"server overloaded: predicted queue wait {wait * 1000:.0f} ms exceeds "
                             f"batching.admission.max_queue_wait_ms ({self.config.max_queue_wait_ms:g})", wait)
        return wait

    def finish_by(self, now: float, deadline: float) -> float:
        """When a request arriving at `now` should have its answer: its deadline less the margin (kept
        for a batch that overruns its fit a little and for the response's way back to the client)."""
        return deadline - (deadline - now) * self.config.deadline_margin

    def too_late(self, texts: int, now: float, finish_by: float) -> bool:
        """True when a text to be answered by `finish_by` (see `finish_by`) cannot be, in a batch of
        `texts` started now."""
        return self.calibrated and finish_by - now < self.model.cost(texts)

    def _shed(self, reason: str, message: str, wait: float) -> Overloaded:
        return Overloaded(reason, message, max(self.retry_after_s, math.ceil(min(wait, 60.0))))
