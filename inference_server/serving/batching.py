"""Dynamic batching: texts from concurrent requests are coalesced into model batches.

One `DynamicBatcher` per model version. Requests `submit` texts into a bounded queue (counted in
texts; full -> 429 `queue_full`). A single collector task takes a window of pending texts once
`max_batch_size` are waiting or the oldest has waited `max_queue_delay_ms`, drops texts whose
request deadline has passed, sorts the window by token length (so a batch holds texts of similar
length and pads little) and hands the window to a free model instance: each instance is a worker
thread, so the event loop stays free and, with several instances, batches run concurrently
(Triton's instance count; on a CPU, single-threaded passes side by side beat one pass spread over
all cores). What is waiting is spread over the free instances; under load each gets a full window.

Failures are contained per batch: an exception or non-finite output fails only that batch's
requests, with a 503 `model_error`, and is counted in `inference_model_errors_total`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from inference_server.config import BatchingConfig
from inference_server.models.backend import EncoderBackend, auto_cpu_instances

from inference_server.errors import ApiError
from inference_server.serving.admission import AdmissionController, Overloaded
from inference_server.serving.metrics import SHED_REASONS, ServerMetrics

__all__ = ["DynamicBatcher", "EncodeResult", "Searcher", "resolve_instances"]

# Exact top-k over the catalog index: (query vectors (m, dim), k) -> (scores (m, k'), rows (m, k')).
Searcher = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]

log = logging.getLogger(__name__)


@dataclass
class EncodeResult:
    """Vectors of one request's texts, in submission order, with the request's share of timing."""

    vectors: np.ndarray
    queue_seconds: float
    compute_seconds: float
    tokens: list[int]
    # With top_k: the single text's catalog hits, searched together with the rest of its batch.
    scores: Optional[np.ndarray] = None
    rows: Optional[np.ndarray] = None


@dataclass
class _Job:
    """One request's texts; finished when every text has a vector (or the first failure)."""

    texts: Sequence[str]
    deadline: float                 # loop.time() after which the work is useless
    request_id: str
    enqueued: float
    future: asyncio.Future
    vectors: Optional[np.ndarray] = None
    remaining: int = 0
    queue_seconds: float = 0.0
    compute_seconds: float = 0.0
    tokens: list[int] = field(default_factory=list)
    started: bool = False           # a text of it was taken into a window
    began: bool = False             # a window holding a text of it began on an instance
    batches: set = field(default_factory=set)   # ids of the batches its texts ran in
    top_k: Optional[int] = None
    hits: Optional[tuple[np.ndarray, np.ndarray]] = None
    finish_by: float = 0.0          # loop time its answer should be ready by (deadline less the margin)
    timer: Optional[asyncio.TimerHandle] = None

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


@dataclass
class _Text:
    job: _Job
    index: int


class DynamicBatcher:
    """Coalesces encode requests of one model version into batches run on one worker thread."""

    def __init__(
        self,
        backend: EncoderBackend,
        config: BatchingConfig,
        metrics: ServerMetrics,
        *,
        model: str,
        version: str,
        retry_after_s: int = 1,
        searcher: Optional[Searcher] = None,
    ) -> None:
        self.backend = backend
        self.searcher = searcher
        self.config = config
        self.model = model
        self.version = version
        self.retry_after_s = retry_after_s
        self._metrics = metrics
        self._queue_seconds = metrics.queue_duration.labels(model, version)
        self._compute_seconds = metrics.compute_duration.labels(model, version)
        self._batch_size = metrics.batch_size.labels(model, version)
        self._tokens = metrics.request_tokens.labels(model, version)
        self._errors = {
            reason: metrics.model_errors.labels(model, version, reason)
            for reason in ("exception", "non_finite_output", "timeout")
        }
        self._admitted = metrics.admitted.labels(model, version)
        self._shed = {reason: metrics.shed.labels(model, version, reason) for reason in SHED_REASONS}
        self._predicted_wait = metrics.predicted_wait.labels(model, version)
        self._wasted = metrics.wasted_compute.labels(model, version)
        self._pending: collections.deque[_Text] = collections.deque()
        self._wakeup = asyncio.Event()
        self.instances = resolve_instances(config, backend)
        backend.configure_parallelism(self.instances)
        self.admission = AdmissionController(
            config.admission, instances=self.instances, retry_after_s=retry_after_s,
            window_size=config.effective_batch_size * (config.window_batches if config.enabled else 1))
        self._executor = ThreadPoolExecutor(max_workers=self.instances,
                                            thread_name_prefix=f"encode-{model}-{version}")
        self._free = self.instances          # instances not running a window
        self._ahead = 0                      # windows dispatched while every instance was busy (0 or 1)
        self._running = 0                    # texts of dispatched windows not yet finished
        self._ahead_window: Optional[list[_Text]] = None   # the window taken ahead until it begins
        self._slot_freed = asyncio.Event()
        self._inflight: set[asyncio.Task] = set()
        self._task: Optional[asyncio.Task] = None
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"batcher-{self.model}-{self.version}"
            )

    async def close(self) -> None:
        """Stop collecting; pending requests fail with 503; waits for the batch in progress."""
        self._closed = True
        self._wakeup.set()
        self._slot_freed.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for task in list(self._inflight):
            task.cancel()
        await asyncio.gather(*self._inflight, return_exceptions=True)
        while self._pending:
            self._pending.popleft().job.fail(ApiError(503, "not_ready", "model version is shutting down",
                                                      retry_after=self.retry_after_s))
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown, True)

    # -- queue -------------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Texts waiting: queued, or in the window taken ahead that no instance has begun."""
        return len(self._pending) + len(self._ahead_window or ())

    @property
    def capacity(self) -> int:
        return self.config.max_queue_size

    async def encode(
        self, texts: Sequence[str], *, deadline: float, request_id: str, top_k: Optional[int] = None
    ) -> EncodeResult:
        """Embed `texts` (one request's) through the batch queue; ApiError 429/503/504 on overload.

        With `top_k` (one text only), the worker also searches the catalog index for it, batched
        with the other searches of the same model batch (one matrix product instead of many).
        """
        if self._closed:
            raise ApiError(503, "not_ready", "model version is shutting down", retry_after=self.retry_after_s)
        if not texts:
            raise ValueError("encode() needs at least one text")
        if top_k is not None and (len(texts) != 1 or self.searcher is None or top_k < 1):
            raise ValueError("top_k needs exactly one text, k >= 1 and a batcher with a searcher")
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now >= deadline:
            raise ApiError(504, "deadline_exceeded", "request deadline passed before its encoding was queued",
                           retry_after=self.retry_after_s)
        if len(texts) > self.capacity:
            self._shed["queue_full"].inc()
            raise ApiError(429, "queue_full", f"request has {len(texts)} texts to encode, more than the queue "
                           f"capacity of {self.capacity}", retry_after=self.retry_after_s)
        if self.depth + len(texts) > self.capacity:
            self._shed["queue_full"].inc()
            raise ApiError(429, "queue_full", f"batch queue is full ({self.depth}/{self.capacity} texts waiting)",
                           retry_after=self.retry_after_s)
        try:
            # A window taken ahead is already in the admission lanes: only the queue is ahead of these.
            wait = self.admission.admit(len(texts), len(self._pending), now, deadline)
        except Overloaded as exc:
            self._shed[exc.reason].inc()
            raise
        self._admitted.inc()
        if wait is not None:
            self._predicted_wait.observe(wait)
        job = _Job(texts=texts, deadline=deadline, request_id=request_id, enqueued=now,
                   future=loop.create_future(), remaining=len(texts), top_k=top_k,
                   finish_by=self.admission.finish_by(now, deadline))
        job.vectors = np.empty((len(texts), self.backend.dim), dtype=np.float32)
        job.tokens = [0] * len(texts)
        self._pending.extend(_Text(job, i) for i in range(len(texts)))
        self._wakeup.set()
        # A job still queued when it can no longer finish in time is shed then (503, early), not at its
        # deadline; the deadline still bounds a batch that is already running (the thread cannot be
        # stopped, but the caller gets its answer on time). A timer is cheaper than wait_for's task.
        job.timer = loop.call_at(self._latest_start(job), self._expire, job)
        try:
            result = await job.future
        except asyncio.CancelledError:
            self._drop(job)
            raise
        finally:
            job.timer.cancel()
        self._queue_seconds.observe(result.queue_seconds, exemplar={"request_id": request_id})
        return result

    def _latest_start(self, job: _Job) -> float:
        """Loop time after which a batch holding this job's texts cannot finish by its `finish_by`."""
        return job.finish_by - self.admission.cost(min(len(job.texts), self.config.effective_batch_size))

    def _expire(self, job: _Job) -> None:
        """Timer: a job still queued at its latest start is shed (503 `late`); one whose batch is
        running gets until its deadline, then 504 (the prediction was wrong: counted as a timeout)."""
        if job.future.done():
            return
        loop = asyncio.get_running_loop()
        if not job.began:   # queued, or in a window taken ahead that has not begun (it skips late texts)
            self._drop(job)
            self._shed["late"].inc()
            job.fail(Overloaded("late", f"server overloaded: {(job.deadline - loop.time()) * 1000:.0f} ms left "
                                "of the request's deadline, less than the expected compute of its batch",
                                self.retry_after_s))
            return
        if loop.time() < job.deadline:
            job.timer = loop.call_at(job.deadline, self._expire, job)
            return
        self._errors["timeout"].inc()
        job.fail(ApiError(504, "deadline_exceeded", f"model did not finish within the request deadline "
                          f"({(job.deadline - job.enqueued) * 1000:.0f} ms)", retry_after=self.retry_after_s))

    def _drop(self, job: _Job) -> None:
        """Remove a job's not-yet-started texts from the queue (client gone or deadline passed)."""
        if any(t.job is job for t in self._pending):
            self._pending = collections.deque(t for t in self._pending if t.job is not job)

    # -- collector ---------------------------------------------------------------------------

    def _unit(self, window_size: int) -> int:
        """Texts to hand an instance: a full window when that many wait (overload), else a batch of
        what is in the server split in instances + 1 parts (at most max_batch_size).

        The extra part is what keeps instances busy under a closed loop: with every text in the server
        running, a finishing instance would find nothing queued and idle while its answers go out and
        the next requests come in; with one part queued, it starts the next batch at once (the window
        taken ahead). Smaller batches cost little next to an idle instance.
        """
        if len(self._pending) >= window_size or not self.config.pipeline:
            return window_size
        in_server = len(self._pending) + self._running
        return min(self.config.effective_batch_size, max(1, in_server // (self.instances + 1)))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        max_batch = self.config.effective_batch_size
        delay = self.config.max_queue_delay_ms / 1000.0 if self.config.enabled else 0.0
        window_size = max_batch * (self.config.window_batches if self.config.enabled else 1)
        while not self._closed:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self._free == 0:
                # Every instance is busy: take the next window now once a unit of texts waits; the
                # worker starts it the moment an instance is free, instead of idling until the (busy)
                # event loop gets round to dispatching it. The worker re-checks each text's time left.
                if self._ahead == 0:
                    unit = self._unit(window_size)
                    if len(self._pending) >= unit:
                        now = loop.time()
                        window = self._take_window(unit, now, min(self.admission.lanes(now)))
                        if window:
                            self._dispatch(window, ahead=True)
                        continue
                    self._wakeup.clear()          # set by new texts and by a freed instance
                    await self._wakeup.wait()
                    continue
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            # Wait for a full batch or until the oldest text has waited `delay`; while other instances
            # run, a unit is enough (they are busy: this one should be too).
            oldest = self._pending[0].job.enqueued
            while not self._closed and len(self._pending) < (
                    max_batch if self._running == 0 else min(max_batch, self._unit(window_size))):
                remaining = oldest + delay - loop.time()
                if remaining <= 0:
                    break
                # Woken by new texts or by the timer; the loop re-checks both (a timer, not wait_for,
                # which would start a task per wait).
                self._wakeup.clear()
                timer = loop.call_later(remaining, self._wakeup.set)
                try:
                    await self._wakeup.wait()
                finally:
                    timer.cancel()
            # Spread what waits over the free instances; under load each still gets a full window.
            share = -(-len(self._pending) // self._free)
            window = self._take_window(min(window_size, max(1, share)), loop.time())
            if window:
                self._dispatch(window)

    def _dispatch(self, window: list[_Text], ahead: bool = False) -> None:
        """Run `window` on a free instance (`ahead`: on the first to be free); the collector goes on
        collecting meanwhile."""
        if ahead:
            self._ahead += 1
            self._ahead_window = window
        else:
            self._free -= 1
        self._running += len(window)
        task = asyncio.get_running_loop().create_task(self._run_window_guarded(window))
        self._inflight.add(task)
        task.add_done_callback(lambda done: self._window_done(done, window))

    def _window_done(self, task: asyncio.Task, window: list[_Text]) -> None:
        self._inflight.discard(task)
        self._running -= len(window)
        if window is self._ahead_window:   # ended without beginning (failed or cancelled)
            self._ahead_window = None
        if self._ahead:          # the window taken ahead has this instance now
            self._ahead -= 1
        else:
            self._free += 1
        self._slot_freed.set()
        self._wakeup.set()

    async def _run_window_guarded(self, window: list[_Text]) -> None:
        """No window may leave its requests hanging: any failure answers them with a 503."""
        try:
            await self._run_window(window)
        except asyncio.CancelledError:
            self._fail(window, ApiError(503, "not_ready", "model version is shutting down",
                                        retry_after=self.retry_after_s))
            raise
        except Exception as exc:  # noqa: BLE001 - a bug here must not stall the queue
            log.exception("model %s/%s: window of %d texts failed", self.model, self.version, len(window))
            self._errors["exception"].inc()
            self._fail(window, _model_error(f"{type(exc).__name__}", self.retry_after_s))

    def _take_window(self, size: int, now: float, start: Optional[float] = None) -> list[_Text]:
        """Up to `size` queued texts for a window taken at `now` that starts at `start` (default now);
        texts of requests already failed are dropped, those that would finish too late are shed."""
        start = now if start is None else start
        window: list[_Text] = []
        # Results are delivered batch by batch, so a text needs time for (at least) one batch; the worker
        # re-checks before each batch (`_encode_window`).
        expected = min(size, len(self._pending), self.config.effective_batch_size)
        while self._pending and len(window) < size:
            text = self._pending.popleft()
            job = text.job
            if job.future.done():
                continue  # failed, timed out or cancelled earlier
            if now >= job.deadline:
                job.fail(ApiError(504, "deadline_exceeded",
                                  f"request waited {(now - job.enqueued) * 1000:.0f} ms in the batch queue, "
                                  f"past its deadline of {(job.deadline - job.enqueued) * 1000:.0f} ms",
                                  retry_after=self.retry_after_s))
                continue
            if not job.started and self.admission.too_late(expected, start, job.finish_by):
                self._shed["late"].inc()
                job.fail(Overloaded("late", f"server overloaded: {(job.deadline - now) * 1000:.0f} ms left of the "
                                    "request's deadline, less than the expected compute of its batch",
                                    self.retry_after_s))
                self._drop(job)
                continue
            job.started = True
            window.append(text)
        return window

    async def _run_window(self, window: list[_Text]) -> None:
        loop = asyncio.get_running_loop()
        max_batch = self.config.effective_batch_size
        token = self.admission.window_started(len(window), loop.time())
        times: list[float] = []   # when the worker began and ended it (time.monotonic(), the loop's clock)

        def work():
            began = time.monotonic()
            times.append(began)
            loop.call_soon_threadsafe(self._window_began, window, token, began)
            try:
                return _encode_window(
                    self.backend, [t.job.texts[t.index] for t in window], [t.job.top_k for t in window],
                    max_batch, self.searcher, [t.job.finish_by for t in window], self.admission.cost,
                    lambda lengths, batch: loop.call_soon_threadsafe(self._deliver, window, lengths, batch))
            finally:
                times.append(time.monotonic())

        computed = 0
        try:
            lengths, batches = await loop.run_in_executor(self._executor, work)
            computed = sum(len(b[0]) for b in batches if b[3] is None or b[3][0] != "late")
        except Exception as exc:  # tokenizer failure: fails the whole window (what was not delivered)
            log.exception("model %s/%s failed on a window of %d texts", self.model, self.version, len(window))
            self._errors["exception"].inc()
            self._fail(window, _model_error(f"model raised {type(exc).__name__}", self.retry_after_s))
            return
        finally:
            self.admission.window_finished(token, computed, times[1] - times[0] if len(times) == 2 else 0.0)

    def _window_began(self, window: list[_Text], token: int, at: float) -> None:
        """Event loop: the worker started `window` at `at` (a window taken ahead waits for its instance)."""
        self.admission.window_began(token, len(window), at)
        if window is self._ahead_window:
            self._ahead_window = None
        for text in window:
            job = text.job
            job.began = True
            job.queue_seconds = max(job.queue_seconds, at - job.enqueued)

    def _deliver(self, window: list[_Text], lengths: list[int], batch) -> None:
        """Event loop: answer the requests of one finished batch (or shed the texts it skipped as late)."""
        order, vectors, seconds, error, hits = batch
        members = [window[i] for i in order]
        if error is not None:
            reason, message = error
            if reason == "late":
                for job in {id(t.job): t.job for t in members}.values():
                    if not job.future.done():
                        self._shed["late"].inc()
                        job.fail(Overloaded("late", message, self.retry_after_s))
                return
            self._errors[reason].inc()
            log.error("model %s/%s batch of %d failed: %s", self.model, self.version, len(members), message)
            self._fail(members, _model_error(message, self.retry_after_s))
            return
        self._compute_seconds.observe(seconds)
        self._batch_size.observe(len(members))
        batch_id = id(batch)
        for row, text in enumerate(members):
            job = text.job
            if job.future.done():
                self._wasted.inc(seconds / len(members))
                continue
            job.vectors[text.index] = vectors[row]
            if row in hits:
                job.hits = hits[row]
            n_tokens = lengths[order[row]]
            job.tokens[text.index] = n_tokens
            self._tokens.observe(n_tokens)
            job.remaining -= 1
            if batch_id not in job.batches:
                job.batches.add(batch_id)
                job.compute_seconds += seconds
            if job.remaining == 0:
                scores, rows = job.hits if job.hits is not None else (None, None)
                job.future.set_result(
                    EncodeResult(job.vectors, job.queue_seconds, job.compute_seconds, job.tokens, scores, rows)
                )

    @staticmethod
    def _fail(texts: Sequence[_Text], exc: ApiError) -> None:
        for text in texts:
            text.job.fail(exc)


def resolve_instances(config: BatchingConfig, backend: EncoderBackend) -> int:
    """Configured instances, or auto: one per usable CPU core (capped) on CPU, one on a GPU."""
    if config.instances is not None:
        return config.instances
    if backend.device == "cpu":
        return auto_cpu_instances()
    return 1


def _model_error(message: str, retry_after: int) -> ApiError:
    return ApiError(503, "model_error", f"the model failed on this request's batch: {message}",
                    retry_after=retry_after)


def _encode_window(backend: EncoderBackend, texts: list[str], top_ks: list[Optional[int]], max_batch: int,
                   searcher: Optional[Searcher], finish_by: Optional[list[float]] = None,
                   cost: Optional[Callable[[int], float]] = None, deliver: Optional[Callable] = None):
    """Worker-thread body: tokenise once, length-sorted batches, encode, check outputs, batched top-k.

    Returns (token lengths, [(window positions, vectors, seconds, error, hits)]); error is
    (reason, message) for a batch that raised or produced non-finite vectors; hits maps a row of the
    batch to its (scores, index rows) when that text asked for top_k. `deliver(lengths, batch)` gets
    each batch as soon as it is done, so early batches' requests do not wait for the window's last.
    With `finish_by` (loop times, i.e. `time.monotonic()`) and `cost` (expected seconds of a batch
    of n), texts that a batch starting now would finish too late for are not computed: they come
    back as a batch with error ("late", message), before the batch they would have joined.
    """
    tokens = backend.tokenize(texts)   # once per window: lengths for grouping, ids for the batches
    lengths = tokens.lengths
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    batches = []

    def done(batch) -> None:
        batches.append(batch)
        if deliver is not None:
            deliver(lengths, batch)

    for start in range(0, len(order), max_batch):
        members = order[start:start + max_batch]
        if finish_by is not None and cost is not None:
            began = time.monotonic()
            need = cost(len(members))
            late = [i for i in members if finish_by[i] - began < need]
            if late:
                done((late, None, 0.0, ("late", f"server overloaded: less time left of the request's deadline "
                                                f"than the expected compute of its batch ({need * 1000:.0f} ms)"), {}))
                members = [i for i in members if finish_by[i] - began >= need]
                if not members:
                    continue
        began = time.perf_counter()
        try:
            vectors = backend.encode_tokens(tokens.select(members))   # padded to this batch's longest
        except Exception as exc:  # noqa: BLE001 - contained per batch, reported by the caller
            log.exception("encode failed")
            done((members, None, time.perf_counter() - began, ("exception", f"{type(exc).__name__}: {exc}"), {}))
            continue
        seconds = time.perf_counter() - began
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (len(members), backend.dim):
            done((members, None, seconds,
                  ("exception", f"backend returned shape {vectors.shape}, expected {(len(members), backend.dim)}"), {}))
            continue
        if not np.isfinite(vectors).all():
            done((members, None, seconds, ("non_finite_output", "model produced non-finite embeddings"), {}))
            continue
        hits = {}
        searching = [row for row, i in enumerate(members) if top_ks[i]]
        if searching and searcher is not None:
            k = max(top_ks[members[row]] for row in searching)
            scores, rows = searcher(vectors[searching], k)
            for at, row in enumerate(searching):
                want = top_ks[members[row]]
                hits[row] = (scores[at, :want], rows[at, :want])
        done((members, vectors, seconds, None, hits))
    return lengths, batches
